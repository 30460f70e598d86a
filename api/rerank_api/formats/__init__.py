"""Wire formats of the rerank clients people use, each converted to the one job contract at the edge.

``v1``: ``POST /v1/rerank``, the seed's ``candidates`` format or the Cohere v1 / Jina ``documents``
format; ``cohere_v2``: ``POST /v2/rerank``; ``tei``: Text Embeddings Inference's ``POST /rerank`` and
``GET /info``; ``common``: the pieces the Cohere-style formats share. All of them rank through
:class:`rerank_api.ranking.Ranker`.
"""

from __future__ import annotations

from fastapi import APIRouter

from rerank_api.formats import cohere_v2, tei, v1

#: Every format's routes; ``create_app`` includes them (behind the API key when one is set).
ROUTERS: tuple[APIRouter, ...] = (v1.router, cohere_v2.router, tei.router)
