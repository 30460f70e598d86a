"""Several Redis commands as one atomic ``EVALSHA``: what a ``MULTI``/``EXEC`` pipeline sends, for less Python.

redis-py's asyncio transaction pipeline spends more of the API's CPU per enqueue than RQ's building of
the job (measured: a quarter of the API process's time at 64 concurrent calls): it packs each command,
then parses ``OK``/``QUEUED`` for each and the ``EXEC`` array. A script that runs the same commands in
order is one command to pack and one reply to parse, and just as atomic (Redis runs a script alone);
neither rolls back on an error. Redis Cluster is out of scope (keys are not declared), as it is for RQ.

The script is sent on connections of this module's own, not through the client: redis-py's blocking
pool (a condition, a timeout and a socket check per checkout) and its ``Script`` wrapper cost the API
more CPU than packing and sending the command. The connections are the client's kind (its URL, timeouts
and retry policy), at most :data:`~rerank_contract.defaults.API_REDIS_CONNECTIONS` at once, as its pool.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence

import hiredis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from rerank_contract.defaults import API_REDIS_CONNECTIONS, REDIS_SOCKET_TIMEOUT_S

#: ARGV is a flat list: for each command, its argument count, then the command and its arguments.
_RUN_ALL = """
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return #ARGV
"""
_SHA = hashlib.sha1(_RUN_ALL.encode()).hexdigest()


class Atomic:
    """Runs command lists as single scripts, on connections made like ``redis``'s own."""

    def __init__(self, redis: AsyncRedis, max_connections: int = API_REDIS_CONNECTIONS) -> None:
        self._pool = redis.connection_pool  # only its make_connection: the connections are not in its pool
        self._idle: list[AbstractConnection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def run(self, commands: Iterable[Sequence[object]]) -> None:
        """Run ``commands`` (each ``(name, *args)``) in order, atomically; raises the first command's error."""
        flat: list[object] = []
        for command in commands:
            flat.append(len(command))
            flat.extend(command)
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
            await connection.retry.call_with_retry(
                lambda: _evalsha(connection, flat), lambda _: connection.disconnect()
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
        """Close the idle connections (the app's shutdown)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()


async def _evalsha(connection: AbstractConnection, args: list[object]) -> None:
    # hiredis packs in C what redis-py's asyncio connection packs in Python (its sync one uses hiredis too).
    await connection.send_packed_command(hiredis.pack_command(("EVALSHA", _SHA, 0, *args)))
    try:
        await connection.read_response()
    except NoScriptError:  # a new or flushed server: EVAL runs the script and caches it for the next EVALSHA
        await connection.send_packed_command(hiredis.pack_command(("EVAL", _RUN_ALL, 0, *args)))
        await connection.read_response()
