"""The API's one seam to RQ: every RQ member it relies on beyond RQ's documented API.

The API enqueues with RQ's own ``Queue.enqueue`` into a pipeline that is only a buffer and sends the
buffered commands itself (:mod:`rerank_api.atomic`); it reads results from RQ's result streams with
``redis.asyncio`` and parses them as RQ does; it reads which worker holds a job from the job's hash.
Each of those leans on an RQ (or redis-py) internal, so they are reached only through here, and
:data:`SURFACE` / :data:`INSTANCE_ATTRIBUTES` name them with the parameters used: ``tests/contract/test_rq_seam.py``
checks them against the installed RQ, so an upgrade fails that one test.
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis as AsyncRedis
from redis.client import Pipeline
from rq import Queue
from rq.job import Job
from rq.results import Result

from rerank_contract.jobs import SERIALIZER
from rerank_contract.rq_surface import Member

#: The job-hash field where RQ's start of a job (``Job.prepare_for_execution``) writes its worker's name.
WORKER_NAME_FIELD = "worker_name"


def knows_server_version(queue: Queue) -> bool:
    """Whether ``queue`` has asked Redis its version yet (RQ asks once per queue, with a blocking INFO)."""
    return bool(queue.redis_server_version)


def ask_server_version(queue: Queue) -> None:
    """Ask it now (a blocking call: run it off the event loop)."""
    queue.get_redis_server_version()


def buffered(buffer: Pipeline) -> list[tuple[Any, ...]]:
    """The commands RQ wrote into a pipeline used only as a buffer, each ``(name, *args)``."""
    return [args for args, _ in buffer.command_stack]


async def worker_of(redis: AsyncRedis, job_id: str) -> str | None:
    """The name of the worker that started ``job_id``, or None while it is not started."""
    name = cast("bytes | None", await redis.hget(Job.key_for(job_id), WORKER_NAME_FIELD))  # replies undecoded
    return name.decode() if name else None


def result_key(job_id: str) -> str:
    """The key of ``job_id``'s result stream, which RQ's worker appends to when the job ends."""
    return Result.get_key(job_id)


def parse_result(job_id: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Result:
    """An entry of that stream as RQ's own reader would parse it."""
    # RQ types `connection` as Redis; the Result only keeps it, and nothing here asks it to read Redis again.
    return Result.restore(job_id, entry_id.decode(), fields, connection=None, serializer=SERIALIZER)  # type: ignore[arg-type]


def queue_key(name: str) -> str:
    """The Redis list of queue ``name``."""
    return Queue.redis_queue_namespace_prefix + name


#: Every RQ member used above beyond RQ's documented API.
SURFACE: tuple[Member, ...] = (
    Member(Queue, "get_redis_server_version"),
    Member(Queue, "redis_queue_namespace_prefix"),
    Member(Result, "get_key", ("job_id",)),
    Member(Result, "restore", ("job_id", "result_id", "payload", "connection", "serializer")),
    Member(Job, "prepare_for_execution", ("worker_name",)),  # writes WORKER_NAME_FIELD
)

#: Instance attributes set in ``__init__`` that the code above reads.
INSTANCE_ATTRIBUTES: dict[type, tuple[str, ...]] = {
    Pipeline: ("command_stack",),
    Queue: ("redis_server_version",),
}
