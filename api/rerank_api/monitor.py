"""A background view of Redis and the live workers, refreshed a few times a second.

Requests read :attr:`WorkerMonitor.snapshot` instead of asking Redis themselves, so "no worker"
and "Redis down" cost nothing on the request path and are answered at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError
from rq import Queue

from rerank_contract.jobs import QUEUES, WORKERS_SET, WorkerInfo, worker_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What the monitor saw last: ``redis_error`` is None while Redis answers."""

    redis_error: str | None
    workers: tuple[WorkerInfo, ...] = ()
    queue_depth: dict[str, int] = field(default_factory=dict)

    @property
    def alive(self) -> frozenset[str]:
        return frozenset(w.name for w in self.workers)


class WorkerMonitor:
    """Keeps :attr:`snapshot` fresh while :meth:`run` runs."""

    def __init__(self, redis: Redis, *, interval_s: float) -> None:
        self._redis = redis
        self._interval_s = interval_s
        self.snapshot = Snapshot(redis_error="not checked yet")

    async def refresh(self) -> Snapshot:
        try:
            names = sorted(n.decode() for n in await self._redis.smembers(WORKERS_SET))
            records = await self._redis.mget([worker_key(n) for n in names]) if names else []
            async with self._redis.pipeline(transaction=False) as pipe:
                for queue in QUEUES:
                    pipe.llen(Queue.redis_queue_namespace_prefix + queue)
                depths = await pipe.execute()
            stale = [n for n, r in zip(names, records, strict=True) if r is None]
            if stale:
                await self._redis.srem(WORKERS_SET, *stale)
            snapshot = Snapshot(
                redis_error=None,
                workers=tuple(WorkerInfo.model_validate_json(r) for r in records if r is not None),
                queue_depth=dict(zip(QUEUES, depths, strict=True)),
            )
        except (RedisError, OSError) as exc:
            if self.snapshot.redis_error is None:
                log.warning("Redis unreachable: %s", exc)
            snapshot = Snapshot(redis_error=f"Redis unreachable: {exc}")
        else:
            if self.snapshot.redis_error is not None:
                log.info("Redis reachable; %d worker(s) alive", len(snapshot.workers))
        self.snapshot = snapshot
        return snapshot

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval_s)
