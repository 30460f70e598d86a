"""A background view of Redis and the live workers, refreshed a few times a second.

Requests read :attr:`WorkerMonitor.snapshot` instead of asking Redis themselves, so "no worker"
and "Redis down" cost nothing on the request path and are answered at once.

The loop cannot die of what it reads: each worker record is validated on its own, and one that is
not a :class:`WorkerInfo` this API can read (garbage, or a record of another version missing fields)
is logged once and left out of the snapshot. Any other unexpected error is logged and the loop goes
on with the last snapshot; :meth:`WorkerMonitor.age_s` tells ``/health`` how old that snapshot is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rerank_api import rq_seam
from rerank_contract.defaults import MONITOR_STALE_INTERVALS, TASK_STOP_GRACE_S
from rerank_contract.jobs import (
    MODEL_KEY_PREFIX,
    MODELS_SET,
    QUEUES,
    WORKER_KEY_PREFIX,
    WORKERS_SET,
    ModelRecord,
    WorkerInfo,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What the monitor saw last: ``redis_error`` is None while Redis answers."""

    redis_error: str | None
    workers: tuple[WorkerInfo, ...] = ()
    queue_depth: dict[str, int] = field(default_factory=dict)
    #: Names in :data:`WORKERS_SET` whose record this API cannot read (left out of ``workers``).
    unreadable: tuple[str, ...] = ()
    #: Models served in the last day (:data:`MODELS_SET`), live or not.
    known: tuple[ModelRecord, ...] = ()

    @property
    def alive(self) -> frozenset[str]:
        return frozenset(w.name for w in self.workers)


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
        shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in errors[:3])
        return shown + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
    return f"{type(exc).__name__}: {exc}"


class WorkerMonitor:
    """Keeps :attr:`snapshot` fresh while :meth:`run` runs (:meth:`start` starts it as a task)."""

    def __init__(self, redis: Redis, *, interval_s: float) -> None:
        self._redis = redis
        self.interval_s = interval_s
        #: ``age_s()`` past this: the loop has stalled.
        self.stale_after_s = MONITOR_STALE_INTERVALS * interval_s
        self.snapshot = Snapshot(redis_error="not checked yet")
        #: ``time.monotonic()`` when the loop last finished a refresh (Redis read, or found unreachable).
        self.refreshed_at: float | None = None
        self._unreadable: set[str] = set()  # the records already logged as unreadable
        self._failing: str | None = None  # the unexpected error already logged
        self._task: asyncio.Task[None] | None = None
        self._confirming: asyncio.Future[Snapshot] | None = None
        self._stopping = False

    def age_s(self) -> float | None:
        """Seconds since the loop last finished a refresh; None before the first."""
        return None if self.refreshed_at is None else time.monotonic() - self.refreshed_at

    async def refresh(self) -> Snapshot:
        """Read Redis now: the new :attr:`snapshot` (Redis errors become ``redis_error``, never raised)."""
        try:
            # The client does not decode replies (as RQ needs): members and records are bytes.
            members = sorted(cast("set[bytes]", await self._redis.smembers(WORKERS_SET)))
            # Keys from the raw member bytes: a name that is not UTF-8 still finds its record.
            keys = [WORKER_KEY_PREFIX.encode() + m for m in members]
            records = cast("list[bytes | None]", await self._redis.mget(keys)) if members else []
            stale = [m for m, r in zip(members, records, strict=True) if r is None]
            if stale:
                await self._redis.srem(WORKERS_SET, *stale)
            workers, unreadable = self._read(members, records)
            queues = list(dict.fromkeys([*QUEUES, *(q for w in workers for q in w.queues)]))
            async with self._redis.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.llen(rq_seam.queue_key(queue))
                depths = await pipe.execute()
            snapshot = Snapshot(
                redis_error=None,
                workers=workers,
                queue_depth=dict(zip(queues, depths, strict=True)),
                unreadable=unreadable,
                known=await self._known(),
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

    async def _known(self) -> tuple[ModelRecord, ...]:
        """The models served in the last day; a record that expired leaves the set, an unreadable one is skipped."""
        names = sorted(cast("set[bytes]", await self._redis.smembers(MODELS_SET)))  # undecoded replies, as above
        keys = [MODEL_KEY_PREFIX.encode() + n for n in names]
        records = cast("list[bytes | None]", await self._redis.mget(keys)) if names else []
        if expired := [n for n, r in zip(names, records, strict=True) if r is None]:
            await self._redis.srem(MODELS_SET, *expired)
        known = []
        for record in records:
            if record is None:  # expired: removed above
                continue
            try:
                known.append(ModelRecord.model_validate_json(record))
            except (ValueError, TypeError):
                continue
        return tuple(known)

    async def confirm_no_worker(self, seen: Callable[[Snapshot], bool] = lambda s: bool(s.workers)) -> Snapshot:
        """The snapshot, read again now if ``seen`` (a worker, by default) is not in it while Redis answers;
        concurrent callers share one read.

        A worker that has just started is in Redis up to one interval before this process's view has it:
        a 503 "no worker" (or a 404 for its model's name) is only given once Redis itself says so. When
        Redis is unreachable the last view stands, so that answer stays immediate.
        """
        if seen(self.snapshot) or self.snapshot.redis_error is not None:
            return self.snapshot
        if self._confirming is None:
            self._confirming = asyncio.ensure_future(self.refresh_or_last())
            self._confirming.add_done_callback(self._confirmed)
        return await asyncio.shield(self._confirming)

    def _confirmed(self, _: asyncio.Future[Snapshot]) -> None:
        self._confirming = None

    def _read(
        self, members: list[bytes], records: list[bytes | None]
    ) -> tuple[tuple[WorkerInfo, ...], tuple[str, ...]]:
        """The readable records as workers, and the names of the others (each logged once while it stays bad)."""
        workers: list[WorkerInfo] = []
        unreadable: list[str] = []
        for member, record in zip(members, records, strict=True):
            if record is None:
                continue
            name = member.decode(errors="backslashreplace")
            try:
                workers.append(WorkerInfo.model_validate_json(record))
            except Exception as exc:  # ValidationError mostly: whatever a record makes the parser raise skips it alone
                unreadable.append(name)
                if name not in self._unreadable:
                    log.warning(
                        "ignoring worker record %s%s: not a worker record this API reads (garbage, or from "
                        "another version of rerank-server): %s",
                        WORKER_KEY_PREFIX,
                        name,
                        _why(exc),
                    )
        self._unreadable = set(unreadable)  # a record that turns bad again is logged again
        return tuple(workers), tuple(unreadable)

    async def refresh_or_last(self) -> Snapshot:
        """:meth:`refresh`, or the last snapshot if it fails unexpectedly (logged, once per distinct error)."""
        await self._refreshed()
        return self.snapshot

    async def _refreshed(self) -> bool:
        try:
            await self.refresh()
        except Exception as exc:
            failing = f"{type(exc).__name__}: {exc}"
            if failing != self._failing:
                log.exception("worker monitor cannot refresh; keeping its last view and trying again")
            self._failing = failing
            return False
        if self._failing is not None:
            log.info("worker monitor refreshes again")
            self._failing = None
        return True

    async def run(self) -> None:
        """Refresh every ``interval_s`` until cancelled; nothing it reads or meets ends it."""
        while not self._stopping:
            await self._tick()
            await asyncio.sleep(self.interval_s)

    async def _tick(self) -> None:
        if await self._refreshed():
            self.refreshed_at = time.monotonic()

    async def start(self) -> None:
        """One refresh now, then :meth:`run` in a task."""
        await self._tick()
        self._task = asyncio.create_task(self.run(), name="worker-monitor")

    async def stop(self) -> None:
        """End :meth:`run`; the flag also ends it should a client library swallow the cancellation mid-read."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=self.interval_s + TASK_STOP_GRACE_S)
            self._task = None
