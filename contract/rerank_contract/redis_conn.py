"""Redis clients with explicit timeouts.

redis-py's defaults retry a timed-out read several times, so a blocking call can hang far past
its own deadline (see the project's RQ notes). Every client here states its socket timeout and
retries a failed command at most once.
"""

from __future__ import annotations

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def connect(url: str, *, socket_timeout: float = 5.0, connect_timeout: float = 2.0) -> Redis:
    """A sync client for ``url`` whose calls fail within about ``socket_timeout`` seconds."""
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
        health_check_interval=30,
    )


def is_reachable(url: str, *, timeout: float = 1.0) -> bool:
    """Whether a Redis answers PING at ``url`` within ``timeout`` seconds."""
    client = connect(url, socket_timeout=timeout, connect_timeout=timeout)
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()
