"""rerank-server: a queue-fed cross-encoder reranking service; this package is what users run.

``uvicorn rerank_server:app`` (the original command line) still works: ``app`` is built on first
access, from the environment's settings, with logging configured at their level (once: later accesses
get the same app), so importing this package builds nothing, reads no setting and loads neither the
API nor torch. In one of ``rerank-server api``'s several processes, building it also starts the watch
that stops the process once its parent is gone (:func:`rerank_server.serve_api.exit_with_parent`).
This package sits on top: it may import the API and the worker, and nothing imports it.
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
        from rerank_server.serve_api import exit_with_parent

        settings = Settings()
        configure_logging(settings.log_level)
        app = globals()["app"] = create_app(settings)
        exit_with_parent()  # one of `rerank-server api`'s processes: it stops once that is killed
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
