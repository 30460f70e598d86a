"""A worker's heartbeat record as the API's monitor reads it, with any field overridden."""

from __future__ import annotations

import time

from rerank_contract.jobs import WorkerInfo


def record(name: str, **fields: object) -> dict:
    info = WorkerInfo(
        name=name,
        host="h",
        pid=1,
        model="m",
        device="cpu",
        dtype="float32",
        max_length=64,
        queues=["rerank"],
        started_at=time.time(),
        model_loads=1,
        jobs_done=0,
        jobs_failed=0,
    )
    return {**info.model_dump(mode="json"), **fields}
