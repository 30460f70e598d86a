"""rerank-server: a queue-fed cross-encoder reranking service; this package is what users run.

``uvicorn rerank_server:app`` (the original command line) still works: ``app`` is built on first
access, from the environment's settings, with logging configured at their level (once: later accesses
get the same app), so importing this package builds nothing, reads no setting and loads neither the
API nor torch. This package sits on top: it may import the API and the worker, and
nothing imports it.
"""

from __future__ import annotations

from typing import Any

from rerank_contract import __version__

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from rerank_api.app import create_app
        from rerank_contract.settings import Settings
        from rerank_server.logs import configure_logging

        settings = Settings()
        configure_logging(settings.log_level)
        app = globals()["app"] = create_app(settings)
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
