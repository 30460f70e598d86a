"""The seed's design as a baseline: the model inside the API process, no queue; and the bare HTTP limit.

``python -m bench.baseline_app MODEL_DIR PORT [DEVICE [DTYPE]]`` serves ``POST /v1/rerank`` like the original
single-file server did (predict in FastAPI's thread pool, one request at a time per thread).
``python -m bench.baseline_app --bare PORT`` serves the same route and body with a constant answer and no
model: what uvicorn and FastAPI alone can serve on this machine (the capacity benchmark's limit).
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Request(BaseModel):
    query: str
    candidates: list[str]


def create(model_dir: str, device: str = "cpu", dtype: str = "float32") -> FastAPI:
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(model_dir, device=device, model_kwargs={"dtype": getattr(torch, dtype)})
    app = FastAPI()

    @app.post("/v1/rerank")
    def rerank(body: Request) -> dict:
        scores = model.predict([(body.query, c) for c in body.candidates], show_progress_bar=False)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return {"results": [{"index": i, "score": float(scores[i])} for i in order], "model": model_dir}

    return app


def bare() -> FastAPI:
    """The same route and request model, answered at once with a constant (async: no thread hop)."""
    app = FastAPI()

    @app.post("/v1/rerank")
    async def rerank(body: Request) -> dict:
        return {"results": [{"index": i, "score": 0.5} for i in range(len(body.candidates))], "model": "bare"}

    return app


if __name__ == "__main__":
    if sys.argv[1] == "--bare":
        app, port = bare(), int(sys.argv[2])
    else:
        app, port = create(sys.argv[1], *sys.argv[3:5]), int(sys.argv[2])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
