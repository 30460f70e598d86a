"""Redis clients with explicit timeouts.

redis-py's defaults retry a timed-out read several times, so a blocking call can hang far past
its own deadline (see the project's RQ notes). Every client here states its socket timeout and
retries a failed command at most once.
"""

from __future__ import annotations

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from rerank_contract import defaults


def connect(
    url: str,
    *,
    socket_timeout: float = defaults.REDIS_SOCKET_TIMEOUT_S,
    connect_timeout: float = defaults.REDIS_CONNECT_TIMEOUT_S,
) -> Redis:
    """A sync client for ``url`` whose calls fail within about ``socket_timeout`` seconds."""
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(
            ExponentialBackoff(cap=defaults.REDIS_RETRY_BACKOFF_CAP_S, base=defaults.REDIS_RETRY_BACKOFF_BASE_S),
            defaults.REDIS_RETRIES,
        ),
        health_check_interval=defaults.REDIS_HEALTH_CHECK_INTERVAL_S,
    )


def is_reachable(url: str, *, timeout: float = defaults.REDIS_PING_TIMEOUT_S) -> bool:
    """Whether a Redis answers PING at ``url`` within ``timeout`` seconds."""
    client = connect(url, socket_timeout=timeout, connect_timeout=timeout)
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()
