"""The one way this project runs Lua in Redis: :class:`Script` and :func:`run`, with one error rule.

A script is sent as ``EVALSHA`` and, on a server that does not know it yet (new, restarted or flushed),
as ``EVAL``, which caches it for the next call. Redis runs a script alone, so each is atomic. The error
rule is Redis's own for ``MULTI``/``EXEC``: a failing command does not stop the ones after it, and the
caller gets the first error, raised as :class:`redis.exceptions.ResponseError` (see :data:`COMMANDS`).
Redis Cluster is out of scope (keys are not always declared), as it is for RQ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1, by which Redis caches it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


def run(connection: Redis, script: Script, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
    """Run ``script`` on ``connection``: its reply, or the error it raised."""
    try:
        return connection.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return connection.eval(script.source, len(keys), *keys, *args)


async def run_on(connection: AbstractConnection, script: Script, args: Sequence[Any]) -> Any:
    """Run ``script`` (no keys) on one asyncio connection, as :func:`run` does; for a caller that keeps its own
    connections (``rerank_api.atomic``). hiredis packs in C what redis-py's asyncio connection packs in Python."""
    await connection.send_packed_command(hiredis.pack_command(("EVALSHA", script.sha, 0, *args)))
    try:
        return await connection.read_response()
    except NoScriptError:  # a new or flushed server: EVAL runs the script and caches it for the next EVALSHA
        await connection.send_packed_command(hiredis.pack_command(("EVAL", script.source, 0, *args)))
        return await connection.read_response()


#: Runs lists of commands, each list ("run") alone and in order. ARGV: for each run, its number of commands and
#: how many of its replies to return, then for each command its argument count, the command and its arguments.
#: Replies one entry per run: ``{0, replies...}``, or ``{error}`` naming the run's first failing command's error;
#: as in ``MULTI``/``EXEC``, the commands after a failing one still run. Kept replies must not be nil.
COMMANDS = Script(
    """
local out, i = {}, 1
while i <= #ARGV do
  local commands, keep = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local replies, failed = {0}, nil
  i = i + 2
  for c = 1, commands do
    local n = tonumber(ARGV[i])
    local reply = redis.pcall(unpack(ARGV, i + 1, i + n))
    if type(reply) == "table" and reply.err then
      failed = failed or reply.err
    elseif c <= keep then
      replies[#replies + 1] = reply
    end
    i = i + n + 1
  end
  out[#out + 1] = failed and {failed} or replies
end
return out
"""
)

#: A run of :data:`COMMANDS`: its commands (each ``(name, *args)``) and how many of their replies to keep.
Run = tuple[Sequence[Sequence[Any]], int]


def pack(runs: Iterable[Run]) -> list[Any]:
    """The ARGV of :data:`COMMANDS` for ``runs``."""
    argv: list[Any] = []
    for commands, keep in runs:
        head = len(argv)
        argv += [0, keep]
        for command in commands:
            argv.append(len(command))
            argv.extend(command)
            argv[head] += 1
    return argv


def outcome(reply: list[Any]) -> list[Any]:
    """One run's entry of the :data:`COMMANDS` reply: its kept replies, or the run's first error raised."""
    if reply[0] != 0:
        error = reply[0]
        raise ResponseError(error.decode(errors="replace") if isinstance(error, bytes) else str(error))
    return list(reply[1:])


def run_commands(connection: Redis, commands: Sequence[Sequence[Any]], keep: int = 0) -> list[Any]:
    """Run ``commands`` alone, in order (:data:`COMMANDS`); the replies of the first ``keep``, or the first error."""
    (reply,) = run(connection, COMMANDS, args=pack([(commands, keep)]))
    return outcome(reply)
