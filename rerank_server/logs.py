"""Logging, configured once per process at its entry point (``rerank-server <command>``, or the lazy
``rerank_server.app`` that ``uvicorn rerank_server:app`` imports); libraries below only get loggers."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` (``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``).

    Safe to call again: it adds no second handler (a root logger that already has one, e.g. pytest's,
    keeps it) and always applies ``level``, so the last call's level holds.
    """
    logging.basicConfig(level=level, format=FORMAT)
    logging.getLogger().setLevel(level)
    # httpx logs every request at INFO: one line per poll would break the bulk CLI's progress bar and bury
    # `up`'s children's logs. Its warnings still show.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level)))
