"""The one seam to RQ: every RQ member this project relies on beyond RQ's documented API.

RQ runs one job at a time; this worker starts, finishes and fails several at once, and drives bulk
jobs chunk by chunk. It does so through the same methods RQ's ``SimpleWorker.perform_job`` calls, so
the registries, the results stream, the worker's counters and the dependents end up as RQ's own path
leaves them, in fewer round trips. Those methods are RQ internals (rq 2.12; rq 3.0 changes them), so
they are called only from here, and :data:`SURFACE` names each with the parameters used:
``tests/contract/test_rq_seam.py`` checks them against the installed RQ, so an upgrade fails that one test.

:class:`RerankJob` is also the trust boundary's last line: RQ imports a job's callback names and sends
its webhooks from several places (the worker's success and failure paths, registry clean-up); this job
class has none of either, whatever its hash says (jobs that ask for them are refused, see
:mod:`rerank_worker.admission`).
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import DequeueTimeout
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.timeouts import BaseDeathPenalty, JobTimeoutException
from rq.utils import now, utcformat
from rq.worker import WorkerStatus

from rerank_contract import scripts
from rerank_contract.defaults import TAKE_WAIT_S
from rerank_contract.rq_surface import Member
from rerank_worker import faults, taking

#: The job-hash field where RQ's start of a job (``Job.prepare_for_execution``) writes its worker's name.
WORKER_NAME_FIELD = "worker_name"

#: An exception as ``sys.exc_info()`` gives it.
ExcInfo = tuple[type[BaseException], BaseException, Any]


def caught() -> ExcInfo:
    """``sys.exc_info()`` in an ``except`` block, where it is never ``(None, None, None)`` (as typeshed allows)."""
    return cast(ExcInfo, sys.exc_info())


class RerankJob(Job):
    """A job that never imports a callback or sends a webhook, whatever its Redis hash names."""

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def send_webhooks(self, status: str | JobStatus, *, exc_string: str | None = None) -> None:
        return None


def callbacks_asked(job: Job) -> dict[str, str]:
    """The callbacks a job's hash names (``success``, ``failure``, ``stopped``), none of them imported."""
    names = {
        "success": job._success_callback_name,
        "failure": job._failure_callback_name,
        "stopped": job._stopped_callback_name,
    }
    return {kind: name for kind, name in names.items() if name}


def webhook_urls(job: Job) -> list[str]:
    """The URLs of the webhooks a job's hash asks for (none is sent)."""
    return [webhook.url for webhook in job.webhooks]


def repeats_asked(job: Job) -> bool:
    return bool(job.repeats_left)


class TakingQueue(Queue):
    """A queue class whose dequeue (RQ's ``lpop``/``lmove``, used by ``Queue.dequeue_any``) takes ids into the
    worker's own list (:mod:`rerank_worker.taking`) instead of popping them into nothing or into RQ's shared
    intermediate list. Made per worker by :func:`taking_queue_class`, which names the taker."""

    taker: str = ""

    @classmethod
    def lpop(cls, queue_keys: Any, timeout: int | None, connection: Redis | None = None) -> Any:
        assert connection is not None and cls.taker
        keys = list(queue_keys)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = taking.take(connection, cls.taker, keys, 1)
            if found is not None:
                return found[0], found[1][0]
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, keys)
            job_id = taking.wait_take(connection, cls.taker, keys[0], min(TAKE_WAIT_S, left))
            if job_id is not None:
                return keys[0], job_id

    @classmethod
    def lmove(cls, connection: Redis, queue_key: str, timeout: int | None) -> Any:
        return cls.lpop([queue_key], timeout, connection=connection)


def taking_queue_class(taker: str) -> type[TakingQueue]:
    """The queue class for a worker named ``taker``: what it dequeues goes into its taken list."""
    return type("TakingQueue", (TakingQueue,), {"taker": taker})


@dataclass
class Running:
    """One job between its start and its end, with the execution RQ records for it."""

    job: Job
    queue: Queue
    execution: Execution | None = None


def _buffer(worker: SimpleWorker) -> Pipeline:
    """A pipeline that is only a buffer: RQ's record builders fill its ``command_stack``; :func:`_run` sends it."""
    return worker.connection.pipeline(transaction=False)


def _run(connection: Redis, buffer: Pipeline, keep: int = 0) -> list[Any]:
    """Send the buffered commands as one atomic script (one command to pack, one reply to parse, where a
    transaction parses a reply per command): :data:`rerank_contract.scripts.COMMANDS`, which runs every command
    and raises the first error, as ``MULTI``/``EXEC``; the replies of the first ``keep`` commands."""
    return scripts.run_commands(connection, [args for args, _ in buffer.command_stack], keep)


def worker_of(connection: Redis, job_id: str) -> str | None:
    """The name of the worker that started ``job_id`` (the job-hash field RQ's start writes), None if not started."""
    name = cast("bytes | None", connection.hget(Job.key_for(job_id), WORKER_NAME_FIELD))  # replies undecoded (RQ)
    return name.decode() if name else None


def start(worker: SimpleWorker, batch: list[Running]) -> None:
    """RQ's start of a job (``prepare_execution`` + ``prepare_job_execution``) for a batch, in one round trip.

    Each job gets its execution in the started registry, its heartbeat, status STARTED, ``started_at``
    and ``worker_name``, and leaves the worker's taken list (:mod:`rerank_worker.taking`) in the same atomic
    script, so it is never in neither; the worker is BUSY on the first job.
    """
    buffer = _buffer(worker)
    longest = 0
    for running in batch:
        ttl = worker.get_heartbeat_ttl(running.job)
        longest = max(longest, ttl)
        running.execution = Execution.create(running.job, ttl, pipeline=buffer, worker_name=worker.name)
        running.job.heartbeat(now(), ttl, pipeline=buffer)
        running.job.prepare_for_execution(worker.name, pipeline=buffer)
        buffer.lrem(taking.taken_key(worker.name), 1, running.job.id)  # out of the taker's list, in the same script
    worker.set_state(WorkerStatus.BUSY, pipeline=buffer)
    worker.set_current_job_id(batch[0].job.id, pipeline=buffer)
    worker.set_current_job_working_time(0, pipeline=buffer)
    worker.heartbeat(longest, pipeline=buffer)
    faults.before_start(len(batch))
    _run(worker.connection, buffer)


def succeed(worker: SimpleWorker, done: list[tuple[Running, Any]], ended_at: datetime) -> None:
    """RQ's ``handle_job_success`` for jobs without repeats, with their return values, in one round trip.

    What RQ's path leaves in Redis, written by RQ's own builders, with one exception: RQ's ``_handle_success``
    saves the whole job hash again (``Job.save``: every field, the payload included) where only ``status`` and
    ``ended_at`` differ from what is stored, so only those two are written (``tests/contract/test_rq_seam.py`` compares
    the records with RQ's own path). RQ watches each job's dependents set, reads it, then writes; here the read
    is inside the same atomic script instead, which keeps RQ's guard against a dependent enqueued meanwhile:
    one registered before the script is seen by it (and enqueued right after, by RQ's ``enqueue_dependents``),
    and one registered after finds its parent finished and is enqueued by RQ at once. (A worker killed between
    the two leaves such dependents deferred; the API's jobs never have any.)
    """
    if not done:
        return
    buffer = _buffer(worker)
    for running, _ in done:
        buffer.exists(running.job.dependents_key)
    ended = utcformat(ended_at)
    for running, value in done:
        job, execution = running.job, running.execution
        assert job.started_at is not None and execution is not None
        job.ended_at = ended_at
        job._result = value
        job._status = JobStatus.FINISHED
        worker.increment_successful_job_count(pipeline=buffer)
        worker.increment_total_working_time(ended_at - job.started_at, buffer)
        result_ttl = job.get_result_ttl(worker.default_result_ttl)
        if result_ttl != 0:  # RQ's _handle_success, less the full re-save of the job hash
            buffer.hset(job.key, mapping={"status": JobStatus.FINISHED, "ended_at": ended})
            Result.create(
                job,
                Result.Type.SUCCESSFUL,
                ttl=result_ttl,
                return_value=value,
                worker_name=worker.name,
                pipeline=buffer,
                execution_id=execution.id,
                execution_started_at=execution.created_at,
                execution_ended_at=ended_at,
            )
            job.finished_job_registry.add(job, result_ttl, buffer)
        job.cleanup(result_ttl, pipeline=buffer, remove_from_queue=False)
        worker.execution = execution
        worker.cleanup_execution(job, pipeline=buffer)
    has_dependents = _run(worker.connection, buffer, keep=len(done))
    for (running, _), dependents in zip(done, has_dependents, strict=True):
        if dependents:
            running.queue.enqueue_dependents(running.job)


def fail(worker: SimpleWorker, running: Running, error: ExcInfo, ended_at: datetime, *, stopped: bool = False) -> None:
    """RQ's failure path (``handle_exception`` + ``handle_job_failure``): logged, recorded, retried if the
    job has retries left; ``stopped`` records it as STOPPED (a cancelled bulk job) instead."""
    job = running.job
    job.ended_at = ended_at
    job._status = JobStatus.FAILED
    worker.execution = running.execution
    if stopped:
        worker._stopped_job_id = job.id
    worker.handle_exception(job, *error)
    worker.handle_job_failure(
        job=job,
        queue=running.queue,
        started_job_registry=running.queue.started_job_registry,
        exc_string="".join(traceback.format_exception(*error)),
    )


def refuse(worker: SimpleWorker, job: Job, queue: Queue, reason: Exception) -> None:
    """Fail a job that was never started (refused before anything of it ran), with ``reason`` as its error."""
    running = Running(job, queue)
    job.retries_left = 0  # a refused job is not run again
    start(worker, [running])
    try:
        raise reason
    except Exception:
        error = caught()
    fail(worker, running, error, now())


def keep_alive(worker: SimpleWorker, running: Running) -> None:
    """Between a bulk job's chunks: refresh its heartbeats (RQ's ``maintain_heartbeats``), and make it the
    worker's current job again after the sync jobs served in between."""
    worker.execution = running.execution
    worker.maintain_heartbeats(running.job)
    worker.set_current_job_id(running.job.id)
    worker.set_state(WorkerStatus.BUSY)


def stop_requested(worker: SimpleWorker) -> bool:
    """Whether SIGTERM asked the worker to stop after the job in hand."""
    return worker._stop_requested


def keep_stop_request(worker: SimpleWorker) -> None:
    """Note a stop request as RQ's handler does for a BUSY worker: its loop stops after the job in hand."""
    worker._stop_requested = True
    with contextlib.suppress(RedisError):  # the date is for display; a stop during an outage still counts
        worker.set_shutdown_requested_date()


def mark_idle(worker: SimpleWorker) -> None:
    """The worker's IDLE state, which RQ's dequeue sets too: from then on RQ's handler raises StopRequested."""
    worker.set_state(WorkerStatus.IDLE)


def time_limit(worker: SimpleWorker, seconds: float, job: Job) -> BaseDeathPenalty:
    """RQ's job timeout (SIGALRM in a SimpleWorker) as a context manager; raises JobTimeoutException."""
    return worker.death_penalty_class(seconds, JobTimeoutException, job_id=job.id)


def job_timeout(job: Job) -> float:
    return job.timeout or Queue.DEFAULT_TIMEOUT


def expire_started(connection: Redis, registry: StartedJobRegistry, entries: list[str]) -> None:
    """Hand started-registry ``job_id:execution_id`` entries to RQ's own abandoned-job clean-up now.

    Their score (expiry time) is set to 0, so ``cleanup(timestamp=1)`` handles exactly these entries:
    re-enqueued if the job has retries left, failed with AbandonedJobError otherwise.
    """
    connection.zadd(registry.key, dict.fromkeys(entries, 0), xx=True)
    registry.cleanup(timestamp=1)


def fail_orphan(connection: Redis, registry: StartedJobRegistry, job: Job, entry: str, reason: str) -> None:
    """Fail a job of the started registry whose worker is gone, with ``reason``, as RQ's clean-up fails one
    without retries (status, failed registry, results stream), and drop its registry ``entry``."""
    with connection.pipeline() as pipe:
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        job._handle_failure(reason, pipe, worker_name="")
        pipe.zrem(registry.key, entry)
        pipe.execute()


def subscribe(worker: SimpleWorker, poll_s: float) -> None:
    """RQ's ``BaseWorker.subscribe`` with a pub/sub thread that reads for at most ``poll_s`` at a time.

    RQ lets that thread block 60 s in one read; redis-py 8.2's ``PubSubWorkerThread.stop`` waits for the
    thread to end, and the reply to RQ's own UNSUBSCRIBE can wake it before the stop flag is down, so every
    worker stop (SIGTERM, retirement, a burst's end) could take a minute.
    """
    worker.pubsub = worker.connection.pubsub()
    worker.pubsub.subscribe(**{worker.pubsub_channel_name: worker.handle_payload})
    # RQ's BaseWorker sets `pubsub_thread = None` without an annotation, so its type is None alone.
    worker.pubsub_thread = worker.pubsub.run_in_thread(  # type: ignore[assignment]
        sleep_time=poll_s, daemon=True, exception_handler=worker._pubsub_exception_handler
    )


#: Every RQ member used above (and by :class:`RerankJob`, :mod:`rerank_worker.worker`) beyond RQ's documented API.
SURFACE: tuple[Member, ...] = (
    Member(SimpleWorker, "execute_job", ("job", "queue")),
    Member(SimpleWorker, "subscribe"),
    Member(SimpleWorker, "pubsub_channel_name"),
    Member(SimpleWorker, "handle_payload", ("message",)),
    Member(SimpleWorker, "_pubsub_exception_handler", ("exc", "pubsub", "pubsub_thread")),
    Member(SimpleWorker, "request_stop", ("signum", "frame")),
    Member(SimpleWorker, "dequeue_job_and_maintain_ttl", ("timeout", "max_idle_time")),
    Member(SimpleWorker, "set_shutdown_requested_date"),
    Member(SimpleWorker, "get_heartbeat_ttl", ("job",)),
    Member(SimpleWorker, "set_state", ("state", "pipeline")),
    Member(SimpleWorker, "set_current_job_id", ("job_id", "pipeline")),
    Member(SimpleWorker, "set_current_job_working_time", ("current_job_working_time", "pipeline")),
    Member(SimpleWorker, "heartbeat", ("timeout", "pipeline")),
    Member(SimpleWorker, "check_for_suspension", ("burst",)),
    Member(SimpleWorker, "run_maintenance_tasks"),
    Member(SimpleWorker, "maintain_heartbeats", ("job",)),
    Member(SimpleWorker, "increment_successful_job_count", ("pipeline",)),
    Member(SimpleWorker, "increment_total_working_time", ("job_execution_time", "pipeline")),
    Member(SimpleWorker, "cleanup_execution", ("job", "pipeline")),
    Member(SimpleWorker, "handle_exception", ("job",)),
    Member(SimpleWorker, "handle_job_failure", ("job", "queue", "started_job_registry", "exc_string")),
    Member(SimpleWorker, "death_penalty_class"),
    Member(Execution, "create", ("job", "ttl", "pipeline", "worker_name")),
    Member(Job, "heartbeat", ("timestamp", "ttl", "pipeline")),
    Member(Job, "prepare_for_execution", ("worker_name", "pipeline")),  # writes WORKER_NAME_FIELD
    Member(Job, "get_result_ttl", ("default_ttl",)),
    Member(Job, "finished_job_registry"),
    Member(Result, "create", ("job", "type", "ttl", "return_value", "worker_name", "pipeline", "execution_id")),
    Member(Result, "create", ("execution_started_at", "execution_ended_at")),
    Member(Job, "cleanup", ("ttl", "pipeline", "remove_from_queue")),
    Member(Job, "_handle_failure", ("exc_string", "pipeline", "worker_name")),
    Member(Job, "dependents_key"),
    Member(Job, "success_callback"),
    Member(Job, "failure_callback"),
    Member(Job, "stopped_callback"),
    Member(Job, "send_webhooks", ("status", "exc_string")),
    Member(Queue, "enqueue_dependents", ("job",)),
    Member(Queue, "DEFAULT_TIMEOUT"),
    Member(Queue, "lpop", ("queue_keys", "timeout", "connection")),
    Member(Queue, "lmove", ("connection", "queue_key", "timeout")),
    Member(Queue, "dequeue_any", ("queues", "timeout", "connection", "job_class", "serializer")),
    Member(SimpleWorker, "queue_class"),
    Member(SimpleWorker, "unsubscribe"),
    Member(StartedJobRegistry, "cleanup", ("timestamp",)),
    Member(StartedJobRegistry, "get_job_and_execution_ids", ("cleanup",)),
)

#: Instance attributes RQ sets in ``__init__`` or ``restore`` and the code above reads or writes.
INSTANCE_ATTRIBUTES: dict[type, tuple[str, ...]] = {
    Pipeline: ("command_stack",),
    SimpleWorker: ("execution", "default_result_ttl", "_stop_requested", "_stopped_job_id", "pubsub", "pubsub_thread"),
    Job: (
        "_result",
        "_status",
        "_success_callback_name",
        "_failure_callback_name",
        "_stopped_callback_name",
        "webhooks",
    ),
}
