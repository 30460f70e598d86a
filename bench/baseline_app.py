"""The seed's design as a baseline: the model inside the API process, no queue.

``python -m bench.baseline_app MODEL_DIR PORT [DEVICE [DTYPE]]`` serves ``POST /v1/rerank`` like the original
single-file server did (predict in FastAPI's thread pool, one request at a time per thread).
"""

from __future__ import annotations

import sys

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import CrossEncoder


class Request(BaseModel):
    query: str
    candidates: list[str]


def create(model_dir: str, device: str = "cpu", dtype: str = "float32") -> FastAPI:
    model = CrossEncoder(model_dir, device=device, model_kwargs={"dtype": getattr(torch, dtype)})
    app = FastAPI()

    @app.post("/v1/rerank")
    def rerank(body: Request) -> dict:
        scores = model.predict([(body.query, c) for c in body.candidates], show_progress_bar=False)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return {"results": [{"index": i, "score": float(scores[i])} for i in order], "model": model_dir}

    return app


if __name__ == "__main__":
    uvicorn.run(create(sys.argv[1], *sys.argv[3:5]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
