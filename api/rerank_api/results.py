"""One result reader per API process: a single ``XREAD BLOCK`` on the result streams of every job in flight.

A request registers its job (:meth:`ResultReader.expect`) and awaits the returned future; the reader's
one task reads RQ's result streams (``rq:results:<id>``) of all registered jobs at once, so a batch of
results the worker finished in one transaction comes back in one reply, instead of one blocking command
(and one pooled connection) per waiting request.

A job registered while the reader is blocked is not in that ``XREAD``: its enqueue transaction then also
appends to this process's wake stream (:meth:`ResultReader.wake_commands`), which the reader always reads
from the last entry it saw, so the ``XREAD`` returns at once and the next one includes the new job. At
most one wake is sent per blocked read. The reader never dies of an error: a Redis error fails the
futures of the jobs waiting then (their requests answer 503) and the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any, cast

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from redis.typing import KeyT, StreamIdT

from rerank_api import rq_seam
from rerank_contract.defaults import RESULT_READER_RETRY_S, TASK_STOP_GRACE_S, WAIT_SLICE_S, WAKE_STREAM_TTL_S

log = logging.getLogger(__name__)

#: What a waiter's future gets: the result stream's last entry (id, fields).
Entry = tuple[bytes, dict[bytes, bytes]]
WAKE_PREFIX = "rerank:api-wake:"


class ResultReader:
    """Reads the results of this process's jobs; started on first use, ended by :meth:`close`."""

    def __init__(self, redis: AsyncRedis) -> None:
        self._redis = redis
        self.wake_key = f"{WAKE_PREFIX}{uuid.uuid4().hex}"
        self._waiting: dict[str, asyncio.Future[Entry]] = {}  # result-stream key -> its waiter
        self._watched: frozenset[KeyT] = frozenset()  # the keys of the XREAD now blocked
        self._woken = False  # a wake was sent for the XREAD now blocked
        self._wake_id = b"0-0"
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def expect(self, job_id: str) -> asyncio.Future[Entry]:
        """The future of ``job_id``'s result entry; call :meth:`wake_commands` for the enqueue that follows."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="result-reader")
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._waiting[rq_seam.result_key(job_id)] = future
        self._changed.set()
        return future

    def forget(self, job_id: str) -> None:
        """Stop waiting for ``job_id`` (its request ended)."""
        self._waiting.pop(rq_seam.result_key(job_id), None)

    def wake_commands(self) -> list[tuple[object, ...]]:
        """Commands to send with the next enqueue: a wake-up when the reader is blocked without the new job."""
        if not self._watched or self._woken:
            return []
        self._woken = True
        return [("XADD", self.wake_key, "MAXLEN", "1", "*", "w", "1"), ("EXPIRE", self.wake_key, WAKE_STREAM_TTL_S)]

    async def _run(self) -> None:
        while not self._closing:
            if not self._waiting:
                self._changed.clear()
                await self._changed.wait()
                continue
            streams: dict[KeyT, StreamIdT] = dict.fromkeys(self._waiting, "0-0")
            streams[self.wake_key] = self._wake_id
            self._watched, self._woken = frozenset(streams), False
            try:
                # RESP2 (the client's protocol): a list of [key, entries], each entry (id, fields).
                replies = cast("list[list[Any]]", await self._redis.xread(streams, block=int(WAIT_SLICE_S * 1000)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # RedisError or OSError mostly: whoever waits now hears of it, the loop goes on
                self._fail_all(exc)
                await asyncio.sleep(RESULT_READER_RETRY_S)
                continue
            finally:
                self._watched = frozenset()
            for key, entries in replies or ():
                key = key.decode() if isinstance(key, bytes) else key
                if key == self.wake_key:
                    self._wake_id = entries[-1][0]
                elif (future := self._waiting.pop(key, None)) is not None and not future.done():
                    future.set_result(entries[-1])

    def _fail_all(self, exc: Exception) -> None:
        if not isinstance(exc, RedisError | OSError):
            log.exception("result reader: unexpected error; failing the requests waiting now", exc_info=exc)
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)

    async def close(self) -> None:
        self._closing = True
        self._changed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({self._task}, timeout=WAIT_SLICE_S + TASK_STOP_GRACE_S)
            self._task = None
