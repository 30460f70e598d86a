"""The one library internal the API leans on: redis-py's ``Pipeline.command_stack`` (``rerank_api.dispatch``).

The API lets RQ write a job into a pipeline that is never executed, then sends what RQ queued there as one
atomic script. If redis-py renames the stack or changes its entries, this test names it.
"""

from __future__ import annotations

import fakeredis
from rq import Queue

from rerank_contract.jobs import RERANK_JOB, SERIALIZER, SYNC_QUEUE


def test_rq_fills_a_pipelines_command_stack_with_args_and_options() -> None:
    connection = fakeredis.FakeStrictRedis()
    queue = Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER)
    queue.redis_server_version = (7, 0, 0)  # as the dispatcher caches it, so nothing is sent while enqueueing
    buffer = connection.pipeline()
    job = queue.enqueue(RERANK_JOB, {"query": "q", "candidates": ["a"]}, pipeline=buffer)
    stack = buffer.command_stack
    assert stack, "redis-py's Pipeline.command_stack is gone or empty: adapt rerank_api/dispatch.py"
    for entry in stack:
        args, options = entry
        assert isinstance(args, tuple) and isinstance(options, dict)
    commands = [args[0].upper() if isinstance(args[0], str) else args[0] for args, _ in stack]
    assert "HSET" in commands and "RPUSH" in commands  # the job hash and the queue entry
    assert connection.exists(job.key) == 0  # queued in the buffer only
