"""Wire type of ``GET /health``. The rerank formats keep their wire types in :mod:`rerank_api.formats`;
the core job types live in the contract."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from rerank_contract.jobs import WorkerInfo


class HealthResponse(BaseModel):
    """The seed's ``status``/``device``/``model`` plus what an operator needs."""

    status: Literal["ok", "no_worker", "redis_unavailable"]
    device: str | None = Field(description="Device of the live worker(s); several are comma-separated.")
    model: str | None = Field(description="Model of the live worker(s); several are comma-separated.")
    redis: Literal["ok", "unreachable"]
    workers_alive: int
    queue_depth: dict[str, int] = Field(description="Jobs waiting, per queue.")
    workers: list[WorkerInfo]
