"""Which model a worker serves, under which names, from which queues.

A worker serves one model under ``RERANK_SERVED_MODEL_NAME`` (the first name canonical) from that model's
own queues (:func:`rerank_contract.jobs.worker_queues`); the default model's workers also take today's
``rerank``/``rerank-bulk``. Two models' workers must not both take those: :func:`default_clash` says why a
worker must not start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis import Redis

from rerank_contract.jobs import (
    BULK_QUEUE,
    MODELS_SET,
    QUEUES,
    SYNC_QUEUE,
    WORKER_KEY_PREFIX,
    WORKERS_SET,
    WorkerInfo,
    model_queues,
    worker_queues,
)
from rerank_contract.settings import Settings


@dataclass(frozen=True)
class Served:
    """The names of this worker's model (the canonical first), whether it is the default, and its queues."""

    names: list[str]
    default: bool
    queues: list[str]

    @property
    def name(self) -> str:
        return self.names[0]

    @classmethod
    def from_settings(cls, settings: Settings, loaded: str) -> Served:
        """``loaded``: the name the scorer gives what it loaded (RERANK_MODEL as given), the default name."""
        names = settings.served_names(loaded)
        default = settings.default_model is None or settings.default_model in names
        return cls(names, default, worker_queues(names[0], default=default))


def default_clash(connection: Redis, served: Served) -> str | None:
    """Why this worker must not start: it would consume the default queues beside a live worker of another model
    (both without RERANK_DEFAULT_MODEL), so a job sent to ``rerank-bulk`` could be scored by either; else None."""
    if not served.default:
        return None
    names = sorted(cast("set[bytes]", connection.smembers(WORKERS_SET)))  # replies undecoded, as RQ needs
    keys = [WORKER_KEY_PREFIX.encode() + n for n in names]
    records = cast("list[bytes | None]", connection.mget(keys)) if names else []
    for record in records:
        try:
            other = WorkerInfo.model_validate_json(record) if record else None
        except ValueError:
            continue
        if other is not None and SYNC_QUEUE in other.queues and other.model != served.name:
            return (
                f"worker {other.name} already serves model {other.model} as the default (queues "
                f"{SYNC_QUEUE}, {BULK_QUEUE}); to serve {served.name} beside it, set RERANK_DEFAULT_MODEL to the "
                "default model's name for this worker, the other workers and the API"
            )
    return None


def every_queue(connection: Redis) -> list[str]:
    """The queues of every model served in the last day (and today's two), for the reaper: a dead worker's jobs go
    back to their own model's queue whichever model's worker notices."""
    models = sorted(m.decode() for m in cast("set[bytes]", connection.smembers(MODELS_SET)))
    return list(dict.fromkeys([*QUEUES, *(q for m in models for q in model_queues(m))]))
