"""Private redis-servers: one for the session, one per test that needs its own (a pytest plugin)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.support.ports import free_port
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; .ci/run installs it")
    server = RedisServer(port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def flushed_redis(redis_server: RedisServer) -> RedisServer:
    redis_server.client().flushall()
    return redis_server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for one test alone: no other test's worker listens on it."""
    server = RedisServer(port=free_port())
    server.start()
    yield server
    server.stop()
