"""rerank-server: a queue-fed cross-encoder reranking service.

``uvicorn rerank_server:app`` (the original command line) still works: ``app`` is looked up
lazily so that importing this package never loads the API, let alone torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "app":
        from rerank_api.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
