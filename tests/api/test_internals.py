"""The library internals the API leans on: redis-py's ``Pipeline.command_stack`` (``rerank_api.rq_seam``), and
its connections driven directly, with hiredis' packer (``rerank_api.atomic``).

The API lets RQ write a job into a pipeline that is never executed, then sends what RQ queued there as one
atomic script on a connection of its own. If redis-py or hiredis change what these lean on, a test names it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import fakeredis
import hiredis
import pytest
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.connection import Connection as AsyncConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from rq import Queue

from rerank_api import atomic as atomic_module
from rerank_api.app import _async_redis
from rerank_api.atomic import Atomic
from rerank_contract.jobs import RERANK_JOB, SERIALIZER, SYNC_QUEUE
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until_async


def test_rq_fills_a_pipelines_command_stack_with_args_and_options() -> None:
    connection = fakeredis.FakeStrictRedis()
    queue = Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER)
    queue.redis_server_version = (7, 0, 0)  # as the dispatcher caches it, so nothing is sent while enqueueing
    buffer = connection.pipeline()
    job = queue.enqueue(RERANK_JOB, {"query": "q", "candidates": ["a"]}, pipeline=buffer)
    stack = buffer.command_stack
    assert stack, "redis-py's Pipeline.command_stack is gone or empty: adapt rerank_api/rq_seam.py"
    for entry in stack:
        args, options = entry
        assert isinstance(args, tuple) and isinstance(options, dict)
    commands = [args[0].upper() if isinstance(args[0], str) else args[0] for args, _ in stack]
    assert "HSET" in commands and "RPUSH" in commands  # the job hash and the queue entry
    assert connection.exists(job.key) == 0  # queued in the buffer only


def test_hiredis_packs_rqs_commands_as_redis_pys_packer_does() -> None:
    """``rerank_api.atomic`` packs with ``hiredis.pack_command`` (redis-py's asyncio connection packs in Python)."""
    connection = fakeredis.FakeStrictRedis()
    queue = Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER)
    queue.redis_server_version = (7, 0, 0)
    buffer = connection.pipeline()
    queue.enqueue(RERANK_JOB, {"query": "q", "candidates": ["a"]}, pipeline=buffer, job_timeout=30, ttl=30)
    flat: list[object] = ["EVALSHA", "0" * 40, 0]
    for args, _ in buffer.command_stack:
        flat += [len(args), *args]
    assert hiredis.pack_command(tuple(flat)) == b"".join(AsyncConnection().pack_command(*flat))


def test_atomic_sends_on_connections_made_by_the_clients_pool(redis_server: RedisServer) -> None:
    """``rerank_api.atomic`` leans on redis-py's ``ConnectionPool.make_connection``, ``send_packed_command``,
    ``can_read`` (what its pool's checkout asks), ``read_response`` (which disconnects on a reply left unread) and the
    connection's ``retry``."""

    async def scenario() -> None:
        client = _async_redis(redis_server.url)  # the app's client, its connection settings
        atomic = Atomic(client)
        key = f"atomic-{uuid.uuid4().hex}"
        await client.script_flush()  # the first run finds no script: EVAL loads it
        opened = (await client.info("stats"))["total_connections_received"]
        for value in ("1", "2"):
            await atomic.run([("SET", f"{key}:k", value), ("INCR", f"{key}:n")])
        assert await client.mget(f"{key}:k", f"{key}:n") == [b"2", b"2"]
        assert (await client.info("stats"))["total_connections_received"] == opened + 1  # one, used twice

        with pytest.raises(ResponseError):  # the failing command's error; the others ran, as in MULTI/EXEC
            await atomic.run([("SET", f"{key}:k", "x"), ("INCR", f"{key}:k"), ("SET", f"{key}:after", "1")])
        assert await client.mget(f"{key}:k", f"{key}:after") == [b"x", b"1"]

        [connection] = atomic._idle
        await client.client_kill_filter(_type="normal", skipme=True)
        # The closed socket's EOF reaches the loop (redis-py's stream reader): the checkout sees it and reconnects.
        await wait_until_async(lambda: connection._reader.at_eof(), 10, "the killed connection's EOF")
        await atomic.run([("SET", f"{key}:k", "after-kill")])
        assert await client.get(f"{key}:k") == b"after-kill"

        assert redis_server.proc is not None
        os.kill(redis_server.proc.pid, signal.SIGSTOP)  # no reply comes while it is stopped
        try:
            reading = asyncio.Event()  # set once the run is sent and its reply awaited
            read_response = connection.read_response

            async def read_after_send(*args, **kwargs):
                reading.set()
                return await read_response(*args, **kwargs)

            connection.read_response = read_after_send
            started = asyncio.ensure_future(atomic.run([("SET", f"{key}:k", "cancelled")]))
            await asyncio.wait_for(reading.wait(), 10)
            started.cancel()  # after the flush: the script still runs, its reply is read by the send, not the caller
            with pytest.raises(asyncio.CancelledError):
                await started
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        await atomic.run([("INCR", f"{key}:n")])
        assert await client.get(f"{key}:n") == b"3"  # its own reply, not the cancelled run's

        await atomic.close()
        await client.aclose()

    asyncio.run(scenario())


def test_atomic_past_its_connections_fails_as_the_blocking_pool_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic_module, "REDIS_SOCKET_TIMEOUT_S", 0.05)

    async def scenario() -> None:
        atomic = Atomic(AsyncRedis.from_url("redis://127.0.0.1:1/0"), max_connections=1)
        await atomic._slots.acquire()  # the one connection is in use
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await atomic.run([("PING",)])

    asyncio.run(scenario())
