"""The suite's tiny cross-encoder: the toy model ``rerank-server model build`` trains offline.

No weights can be downloaded here, so the suite makes its own model with the command's recipe: a 2-layer
BERT with a word vocabulary, trained for a few seconds with BCE on a handful of topics, so it ranks each
topic's passages first. The result is a real CrossEncoder folder that the worker loads like any model.
"""

from __future__ import annotations

from rerank_server.model_cli import TOPICS, build

__all__ = ["TOPICS", "build"]
