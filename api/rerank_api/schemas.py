"""Wire types of the HTTP API (the seed's format). The core job types live in the contract."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rerank_server.contract import ScoredIndex, WorkerInfo


class RerankRequest(BaseModel):
    """The seed's request: one query, the candidates to order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"query": "machine learning", "candidates": ["deep learning", "cooking recipes", "neural networks"]}
            ]
        }
    )

    query: str = Field(description="The text the candidates are scored against.")
    candidates: list[str] = Field(description="Texts to rank; the results refer to them by index.")


class RerankResponse(BaseModel):
    """The seed's response: every candidate's index and score, best first."""

    results: list[ScoredIndex]
    model: str
    processing_time_ms: float


class HealthResponse(BaseModel):
    """The seed's ``status``/``device``/``model`` plus what an operator needs."""

    status: Literal["ok", "no_worker", "redis_unavailable"]
    device: str | None = Field(description="Device of the live worker(s); several are comma-separated.")
    model: str | None = Field(description="Model of the live worker(s); several are comma-separated.")
    redis: Literal["ok", "unreachable"]
    workers_alive: int
    queue_depth: dict[str, int] = Field(description="Jobs waiting, per queue.")
    workers: list[WorkerInfo]
