"""Wire type of ``GET /health``. The rerank formats keep their wire types in :mod:`rerank_api.formats`;
the core job types live in the contract."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from rerank_contract.jobs import WorkerInfo

#: ``status`` values answered with HTTP 200; every other one is answered with 503 (same body).
SERVING_STATUSES = frozenset({"ok", "degraded"})


class ModelHealth(BaseModel):
    """One model known to the API: its names, whether it is the default, its live workers and queues."""

    name: str = Field(description="The canonical name, which answers carry.")
    served_names: list[str] = Field(description="Every name requests may give in `model`, the canonical first.")
    default: bool = Field(description="Requests without `model` go to this model.")
    workers_alive: int
    workers: list[str] = Field(description="Names of its live workers (details in the top-level `workers`).")
    queue_depth: dict[str, int] = Field(description="Jobs waiting in its sync and bulk queues.")


class HealthResponse(BaseModel):
    """The seed's ``status``/``device``/``model`` plus what an operator needs."""

    status: Literal["ok", "degraded", "no_worker", "redis_unavailable", "monitor_stale"] = Field(
        description="ok and degraded (serving, see `problems`) are HTTP 200; no_worker, redis_unavailable and "
        "monitor_stale (this API process's view of the workers has stopped refreshing) are HTTP 503."
    )
    problems: list[str] = Field(
        default_factory=list, description="What is wrong, one sentence each; empty when the status is ok."
    )
    device: str | None = Field(description="Device of the default model's live worker(s); several are comma-separated.")
    model: str | None = Field(description="The default model's canonical name (what requests without `model` get).")
    backend: str | None = Field(
        None,
        description="What runs the default model in its live worker(s) (RERANK_BACKEND); several are comma-separated.",
    )
    redis: Literal["ok", "unreachable"]
    instance: str = Field(description="This API's id (`RERANK_INSTANCE`): tells one service from another on a port.")
    workers_alive: int
    queue_depth: dict[str, int] = Field(description="Jobs waiting, per queue.")
    monitor_age_s: float | None = Field(
        description="Seconds since this API process's worker monitor last refreshed its view (every 0.5 s)."
    )
    reaper_age_s: float | None = Field(
        description="Seconds since the newest reaper sweep a live worker reported; None before the first."
    )
    unreadable_workers: list[str] = Field(
        default_factory=list,
        description="Names in the worker set whose record this API cannot read (garbage, or another version's); "
        "ignored, not counted as alive.",
    )
    workers: list[WorkerInfo]
    models: list[ModelHealth] = Field(
        default_factory=list, description="Every model served now or in the last day, with its live workers."
    )
