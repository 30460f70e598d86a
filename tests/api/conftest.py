"""The api layer: the FastAPI app in this process (Starlette's TestClient), on a private redis-server, no worker."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from rerank_api.app import create_app
from rerank_contract.settings import Settings
from tests.support.redis_server import RedisServer


@pytest.fixture
def api_client(flushed_redis: RedisServer) -> Iterator[Callable[..., TestClient]]:
    """Makes a started app (its lifespan run) with ``Settings(redis_url=<this test's Redis>, **settings)``; every
    app made is shut down after the test."""
    with contextlib.ExitStack() as started:

        def make(**settings: object) -> TestClient:
            app = create_app(Settings(redis_url=flushed_redis.url, **settings))
            return started.enter_context(TestClient(app))

        yield make
