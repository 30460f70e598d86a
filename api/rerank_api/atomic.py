"""Several Redis commands as one atomic ``EVALSHA``: what a ``MULTI``/``EXEC`` pipeline sends, for less Python.

redis-py's asyncio transaction pipeline spends more of the API's CPU per enqueue than RQ's building of
the job (measured: a quarter of the API process's time at 64 concurrent calls): it packs each command,
then parses ``OK``/``QUEUED`` for each and the ``EXEC`` array. A script that runs the same commands in
order is one command to pack and one reply to parse, and just as atomic (Redis runs a script alone);
neither rolls back on an error. Redis Cluster is out of scope (keys are not declared), as it is for RQ.

The runs started in one event-loop iteration (a burst of requests after a worker's batch, measured: mostly
20 to 40 at 64 concurrent calls) go to Redis as one script: one write and one reply instead of one each.
Each run keeps its own outcome under the project's one error rule (:mod:`rerank_contract.scripts`, whose
``COMMANDS`` script this sends): as in ``MULTI``/``EXEC``, every command runs and only that run raises its
first error.

The script is sent on connections of this module's own, not through the client: redis-py's blocking
pool (a condition, a timeout and a socket check per checkout) and its ``Script`` wrapper cost the API
more CPU than packing and sending the command. The connections are the client's kind (its URL, timeouts
and retry policy), at most :data:`~rerank_contract.defaults.API_REDIS_CONNECTIONS` at once, as its pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from rerank_contract import scripts
from rerank_contract.defaults import API_REDIS_CONNECTIONS, REDIS_SOCKET_TIMEOUT_S

#: One run waiting for the flush: its ARGV part and its caller's future.
_Run = tuple[list[object], asyncio.Future[None]]


class Atomic:
    """Runs command lists as single scripts, on connections made like ``redis``'s own."""

    def __init__(self, redis: AsyncRedis, max_connections: int = API_REDIS_CONNECTIONS) -> None:
        self._pool = redis.connection_pool  # only its make_connection: the connections are not in its pool
        self._idle: list[AbstractConnection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._pending: list[_Run] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, commands: Iterable[Sequence[object]]) -> None:
        """Run ``commands`` (each ``(name, *args)``) in order, atomically; raises the first command's error.

        The run is sent when this loop iteration ends, with every other run started in it."""
        part = scripts.pack([(list(commands), 0)])
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((part, future))
        await future  # a caller cancelled before the flush is left out; after it, its commands still run

    def _flush(self) -> None:
        runs = [run for run in self._pending if not run[1].done()]
        self._pending = []
        if runs:  # its own task: a caller that gives up cancels its wait, not the others' send
            task = asyncio.get_running_loop().create_task(self._send(runs))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, runs: list[_Run]) -> None:
        try:
            replies = await self._call([arg for part, _ in runs for arg in part])
            for (_, future), reply in zip(runs, replies, strict=True):
                if future.done():
                    continue
                try:
                    scripts.outcome(reply)
                except ResponseError as error:
                    future.set_exception(error)
                else:
                    future.set_result(None)
        except BaseException as exc:  # every caller still waiting hears of it
            cancelled = isinstance(exc, asyncio.CancelledError)
            for _, future in runs:
                if future.done():
                    continue
                if cancelled:
                    future.cancel()
                else:
                    future.set_exception(exc)
            if cancelled:
                raise

    async def _call(self, args: list[object]) -> list[list[object]]:
        if self._slots.locked():  # as the blocking pool: wait a while for a connection, then fail
            try:
                async with asyncio.timeout(REDIS_SOCKET_TIMEOUT_S):
                    await self._slots.acquire()
            except TimeoutError:
                raise RedisConnectionError("No connection available.") from None
        else:
            await self._slots.acquire()
        connection = await self._checkout()
        try:
            # As the client's execute_command: its retry policy, a connection error disconnecting.
            return await connection.retry.call_with_retry(
                lambda: scripts.run_on(connection, scripts.COMMANDS, args), lambda _: connection.disconnect()
            )
        finally:
            # redis-py disconnects a connection whose reply was not read (an error, a cancellation); it reconnects
            # on its next command.
            self._idle.append(connection)
            self._slots.release()

    async def _checkout(self) -> AbstractConnection:
        """An idle connection, or a new one; as the pool's checkout, one the server closed (or with unread data) is
        reopened rather than sent on, so a restarted Redis costs a reconnect, not a failed enqueue."""
        connection = self._idle.pop() if self._idle else self._pool.make_connection()
        try:
            stale = connection.is_connected and await connection.can_read()
        except (RedisConnectionError, OSError):
            stale = True
        if stale:
            await connection.disconnect()  # the next command connects again
        return connection

    async def close(self) -> None:
        """Finish the scripts being sent, then close the idle connections (the app's shutdown)."""
        if self._sending:
            await asyncio.wait(self._sending)
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()
