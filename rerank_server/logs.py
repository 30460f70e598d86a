"""Logging set-up for the entry points: they configure it once; the API, the worker and the contract never do."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    """Log ``level`` and above to stderr, one line per record with time, level and logger."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
