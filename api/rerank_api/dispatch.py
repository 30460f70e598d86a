"""Enqueue one RQ job per request and wait for its result without blocking the event loop.

Enqueueing lets RQ's own API write the job into a pipeline that is only a buffer, then sends those
commands as one atomic script from the event loop (:mod:`rerank_api.atomic`; RQ has no asyncio API, and a
thread hop and RQ's two transactions cost more than the queue hop itself). Waiting is a future that the process's one
:class:`~rerank_api.results.ResultReader` resolves (one ``XREAD BLOCK`` for every job in flight), awaited
in short slices: after a slice without its result the waiter checks that a worker is still alive and
still holds the job, so a dead worker gives a 503 within seconds instead of a hang until the timeout. A
request that gives up cancels its job.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.results import Result

from rerank_api import rq_seam
from rerank_api.atomic import Atomic
from rerank_api.errors import ApiError, ErrorType
from rerank_api.models import Model, Models
from rerank_api.monitor import Snapshot, WorkerMonitor
from rerank_api.results import ResultReader
from rerank_contract.defaults import RETRY_AFTER_S, SYNC_FAILURE_TTL_MIN_S, WAIT_SLICE_S
from rerank_contract.jobs import (
    RERANK_JOB,
    SERIALIZER,
    InputTooLong,
    RerankPayload,
    RerankResult,
    worker_key,
)

log = logging.getLogger(__name__)


class Dispatcher:
    """Runs rerank payloads through the sync queue of the model each asks for (:mod:`rerank_api.models`)."""

    def __init__(
        self,
        sync_redis: Redis,
        async_redis: AsyncRedis,
        monitor: WorkerMonitor,
        *,
        timeout_s: float,
        result_ttl_s: int,
        max_inflight: int,
        max_queue_depth: int,
        default_model: str | None = None,
    ) -> None:
        self._sync_redis = sync_redis
        self._max_inflight = max_inflight
        self._max_queue_depth = max_queue_depth
        self.inflight = 0
        self._redis = async_redis
        self._monitor = monitor
        self._timeout_s = timeout_s
        self._result_ttl_s = result_ttl_s
        self._default_model = default_model
        self._queues: dict[str, Queue] = {}
        self._models: tuple[Snapshot, Models] | None = None
        self.reader = ResultReader(async_redis)
        self._atomic = Atomic(async_redis)

    async def close(self) -> None:
        """Stop the result reader and close the enqueue's connections (the app's shutdown)."""
        await self.reader.close()
        await self._atomic.close()

    def models(self) -> Models:
        """The models of the monitor's current view."""
        return self._models_of(self._monitor.snapshot)

    def _models_of(self, snapshot: Snapshot) -> Models:
        """``Models`` of ``snapshot``, built once per snapshot (a new one every monitor interval), not per request."""
        if self._models is None or self._models[0] is not snapshot:
            self._models = (snapshot, Models(snapshot, self._default_model))
        return self._models[1]

    async def route(self, requested: str | None = None) -> Model:
        """The live model ``requested`` names (None: the default), or raise (503 Redis down or no worker of it,
        404 unknown name). A name or worker missing from the view is looked up in Redis again before the answer."""

        def found(snapshot: Snapshot) -> bool:
            model = self._models_of(snapshot).find(requested)
            return model is not None and bool(model.workers)

        snapshot = await self._monitor.confirm_no_worker(found)
        if snapshot.redis_error is not None:
            raise ApiError(ErrorType.QUEUE_UNAVAILABLE, snapshot.redis_error)
        return self._models_of(snapshot).route(requested)

    async def check_can_serve(self, model: str | None = None) -> None:
        """Raise (503) when Redis is down or no worker of ``model`` (None: the default) is alive, before anything
        is enqueued; 404 for a name no model has."""
        await self.route(model)

    def _check_capacity(self, model: Model) -> None:
        """429 instead of an ever longer wait: past the in-flight or the model's queue-depth bound, callers back off."""
        depth = self._monitor.snapshot.queue_depth.get(model.sync_queue, 0)
        if self.inflight >= self._max_inflight or depth >= self._max_queue_depth:
            raise ApiError(
                ErrorType.OVERLOADED,
                f"overloaded: {self.inflight} requests in flight here (max {self._max_inflight}), "
                f"{depth} jobs queued (max {self._max_queue_depth}) for model {model.name}",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )

    async def _enqueue(self, payload: RerankPayload, model: Model) -> tuple[str, asyncio.Future]:
        seconds = math.ceil(self._timeout_s)
        queue = self._queues.get(model.sync_queue)
        if queue is None:  # the model's own queue: only its workers take from it, so batches never mix models
            queue = Queue(model.sync_queue, connection=self._sync_redis, serializer=SERIALIZER)
            await asyncio.to_thread(rq_seam.ask_server_version, queue)  # RQ asks once per queue, a blocking INFO
            self._queues[model.sync_queue] = queue
        buffer = self._sync_redis.pipeline()  # never executed: RQ fills it, the async client sends it
        job = queue.enqueue(
            RERANK_JOB,
            payload.model_dump(mode="json", exclude_defaults=True),  # default requests stay readable by older workers
            job_timeout=seconds,
            ttl=seconds,  # still queued after the caller gave up: RQ drops it
            result_ttl=self._result_ttl_s,
            failure_ttl=max(self._result_ttl_s, SYNC_FAILURE_TTL_MIN_S),
            description=f"rerank {len(payload.candidates)} candidates",
            pipeline=buffer,
        )
        result = self.reader.expect(job.id)  # before the job exists, so no result can come unseen
        try:
            await self._atomic.run([*rq_seam.buffered(buffer), *self.reader.wake_commands()])
        except BaseException:
            self.reader.forget(job.id)
            raise
        return job.id, result

    def _cancel(self, job_id: str) -> None:
        try:
            Job.fetch(job_id, connection=self._sync_redis, serializer=SERIALIZER).cancel()
        except Exception as exc:  # best effort: the job may have finished or expired meanwhile
            log.debug("could not cancel job %s: %s", job_id, exc)

    async def run(
        self,
        payload: RerankPayload,
        gone: Callable[[], Awaitable[bool]] | None = None,
        model: str | None = None,
    ) -> RerankResult:
        """Enqueue ``payload`` for ``model`` (any of its names; None: the default) and return the worker's result,
        or raise :class:`ApiError`.

        ``gone`` tells whether the client disconnected; it is asked between wait slices, and a
        request whose client left has its job cancelled, so a job not yet started is never computed.
        """
        routed = await self.route(model)
        self._check_capacity(routed)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        self.inflight += 1
        try:
            try:
                job_id, result = await self._enqueue(payload, routed)
            except (RedisError, OSError) as exc:
                raise ApiError(ErrorType.QUEUE_UNAVAILABLE, f"cannot enqueue: Redis unreachable: {exc}") from exc
            try:
                return await self._wait(job_id, result, deadline, gone, routed.name)
            except BaseException:
                loop.run_in_executor(None, self._cancel, job_id)
                raise
            finally:
                self.reader.forget(job_id)
        finally:
            self.inflight -= 1

    async def _wait(
        self,
        job_id: str,
        result: asyncio.Future,
        deadline: float,
        gone: Callable[[], Awaitable[bool]] | None,
        model: str,
    ) -> RerankResult:
        loop = asyncio.get_running_loop()
        while (remaining := deadline - loop.time()) > 0:
            done, _ = await asyncio.wait({result}, timeout=min(WAIT_SLICE_S, remaining))
            if done:
                try:
                    entry_id, fields = result.result()
                except (RedisError, OSError) as exc:
                    raise ApiError(ErrorType.QUEUE_UNAVAILABLE, f"lost Redis while waiting: {exc}") from exc
                return self._parse(job_id, entry_id, fields)
            if gone is not None and await gone():
                raise ApiError(ErrorType.CLIENT_CLOSED, f"client disconnected; job {job_id} cancelled")
            await self._check_still_running(job_id, model)
        raise ApiError(ErrorType.TIMEOUT, f"no result within {self._timeout_s:g}s (job {job_id})")

    async def _check_still_running(self, job_id: str, model: str) -> None:
        """A started job whose worker died is lost (503 worker_lost); a queued one needs a live worker (503)."""
        try:
            if name := await rq_seam.worker_of(self._redis, job_id):
                if name in self._monitor.snapshot.alive or await self._redis.exists(worker_key(name)):
                    return
                raise ApiError(ErrorType.WORKER_LOST, f"worker {name} died while running job {job_id}")
        except (RedisError, OSError) as exc:
            raise ApiError(ErrorType.QUEUE_UNAVAILABLE, f"lost Redis while waiting: {exc}") from exc
        await self.check_can_serve(model)

    @staticmethod
    def _parse(job_id: str, entry_id: bytes, fields: dict[bytes, bytes]) -> RerankResult:
        result = rq_seam.parse_result(job_id, entry_id, fields)
        if result.type == Result.Type.SUCCESSFUL:
            return RerankResult.model_validate(result.return_value)
        if (too_long := InputTooLong.find(result.exc_string or "")) is not None:
            log.info("job %s refused by worker %s: %s", job_id, result.worker_name, too_long)
            raise ApiError(ErrorType.INPUT_TOO_LONG, too_long)
        if AbandonedJobError.__name__ in (result.exc_string or ""):  # the worker's reaper gave the job up
            raise ApiError(ErrorType.WORKER_LOST, f"the worker running job {job_id} died")
        lines = [line for line in (result.exc_string or "").splitlines() if line.strip()]
        reason = lines[-1] if lines else result.type.name.lower()
        log.warning("job %s failed on worker %s: %s", job_id, result.worker_name, reason)
        raise ApiError(ErrorType.INFERENCE_FAILED, f"job {job_id} failed on worker {result.worker_name}: {reason}")
