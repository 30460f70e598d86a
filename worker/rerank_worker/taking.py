"""Taking jobs off the queues so that a taken job is, at every instant, in a list or a registry.

A worker moves the ids it takes (``LMOVE``, atomically) from a queue into its own list,
``rerank:taken:<worker name>``; starting a job (:func:`rerank_worker.rq_seam.start`) moves it from there into
RQ's started registry in the same script. So a worker killed between taking and starting (SIGKILL, an
OOM kill, a power cut) leaves its ids in a list that names it, and :func:`give_back` (the reaper, once that
worker's heartbeat is gone; the worker itself at a clean exit) puts them back at the head of their queues, in
order: a sync job whose caller still waits is run by another worker, a bulk job runs (it never started).
Cancelled jobs (their caller gave up) and expired ones are dropped.

RQ's own dequeue takes with ``BLPOP`` when a worker has several queues, where the id is in nothing until
the job starts, and ``LMOVE``s into a list shared by every worker (``rq:queue:<name>:intermediate``) with
one queue, from which RQ's maintenance only fails a stuck job, minutes later. :class:`TakingQueue`
replaces both (:func:`take`): the first queue (the sync one) is waited on with ``BLMOVE``, which wakes
at once for a sync job; the others are looked at between waits of :data:`~rerank_contract.defaults.TAKE_WAIT_S`.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis import Redis
from redis.exceptions import WatchError
from rq.job import Job
from rq.utils import as_text

from rerank_contract.jobs import worker_key
from rerank_contract.scripts import Script, run

#: The names of workers that may hold taken ids (one list each), for the reaper.
TAKERS = "rerank:takers"
TAKEN_PREFIX = "rerank:taken:"


def taken_key(worker_name: str) -> str:
    return f"{TAKEN_PREFIX}{worker_name}"


#: KEYS: the taker's list, TAKERS. ARGV: how many, the taker's name, then queue keys in order. Moves up to ``count``
#: ids from the first non-empty queue into the taker's list; replies ``{queue key, ids...}`` or ``{}``.
_TAKE = Script(
    """
redis.call("SADD", KEYS[2], ARGV[2])
for q = 3, #ARGV do
  local ids = {}
  for _ = 1, tonumber(ARGV[1]) do
    local id = redis.call("LMOVE", ARGV[q], KEYS[1], "LEFT", "RIGHT")
    if not id then break end
    ids[#ids + 1] = id
  end
  if #ids > 0 then
    table.insert(ids, 1, ARGV[q])
    return ids
  end
end
return {}
"""
)

#: KEYS: the taker's list. ARGV: queue key, id pairs in the order taken. Each id still in the list goes back to the
#: head of its queue (the last first, so the order is kept); replies how many.
_PUT_BACK = Script(
    """
local n = 0
for i = #ARGV - 1, 1, -2 do
  if redis.call("LREM", KEYS[1], 1, ARGV[i + 1]) > 0 then
    redis.call("LPUSH", ARGV[i], ARGV[i + 1])
    n = n + 1
  end
end
return n
"""
)


def take(connection: Redis, taker: str, queue_keys: Sequence[str], count: int) -> tuple[str, list[str]] | None:
    """Up to ``count`` ids from the first non-empty queue of ``queue_keys``, moved into ``taker``'s list."""
    reply = run(connection, _TAKE, [taken_key(taker), TAKERS], [count, taker, *queue_keys])
    if not reply:
        return None
    return as_text(reply[0]), [as_text(i) for i in reply[1:]]


def wait_take(connection: Redis, taker: str, queue_key: str, timeout: float) -> str | None:
    """Block up to ``timeout`` s for an id of ``queue_key``, moved into ``taker``'s list (``BLMOVE``)."""
    connection.sadd(TAKERS, taker)
    # redis-py types BLMOVE's timeout as int; Redis (6.0+) takes fractional seconds, as TAKE_WAIT_S is.
    found = connection.blmove(queue_key, taken_key(taker), timeout, "LEFT", "RIGHT")  # type: ignore[arg-type]
    return None if found is None else as_text(found)


def put_back(connection: Redis, taker: str, queue_key: str, ids: Sequence[str]) -> None:
    """Return ``ids`` (taken by ``taker``, not started) to the head of ``queue_key``, in their order."""
    if ids:
        run(connection, _PUT_BACK, [taken_key(taker)], [a for i in ids for a in (queue_key, i)])


def drop(connection: Redis, taker: str, ids: Sequence[str]) -> None:
    """Forget taken ids that will not run (expired, cancelled while queued)."""
    if ids:
        with connection.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.lrem(taken_key(taker), 1, job_id)
            pipe.execute()


def give_back(connection: Redis, taker: str, queue_key_of: dict[str, str]) -> list[str]:
    """Put every id ``taker`` holds unstarted back at the head of its queue; returns them.

    ``queue_key_of`` maps a queue name (a job's ``origin``) to its key. Ids whose job is gone, cancelled, or of
    another queue are dropped. Run for a taker that is gone (its heartbeat expired), or by the taker itself as it
    exits; the list and the taker's name are removed once empty.
    """
    key = taken_key(taker)
    ids = [as_text(i) for i in connection.lrange(key, 0, -1)]
    back: list[tuple[str, str]] = []
    dropped: list[str] = []
    if ids:
        with connection.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(Job.key_for(job_id), "origin", "status")
            fields = pipe.execute()
        for job_id, (origin, status) in zip(ids, fields, strict=True):
            queue_key = queue_key_of.get(as_text(origin)) if origin else None
            if queue_key is None or as_text(status) == "canceled":
                dropped.append(job_id)
            else:
                back.append((queue_key, job_id))
        drop(connection, taker, dropped)
        if back:
            run(connection, _PUT_BACK, [key], [a for pair in back for a in pair])
    try:
        with connection.pipeline() as pipe:  # forget the taker only if it took nothing meanwhile
            pipe.watch(key)
            if not pipe.llen(key):
                pipe.multi()
                pipe.srem(TAKERS, taker)
                pipe.execute()
    except WatchError:
        pass
    return [job_id for _, job_id in back]


def dead_takers(connection: Redis) -> list[str]:
    """Takers whose heartbeat record is gone (dead, or frozen past their TTL)."""
    names = [as_text(n) for n in connection.smembers(TAKERS)]
    if not names:
        return []
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(worker_key(name))
        alive = pipe.execute()
    return [name for name, up in zip(names, alive, strict=True) if not up]
