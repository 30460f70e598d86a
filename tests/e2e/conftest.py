"""The e2e layer: real worker and API processes. Every test here is marked ``e2e`` by its folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer
from tests.support.services import Stack

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of this folder ``e2e`` (the hook sees every collected item, so it picks its own)."""
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One worker and one API, shared by a test module."""
    redis_server.client().flushall()
    s = Stack(redis_server.url, model_dir, tmp_path_factory.mktemp("stack-logs"))
    s.start_api()
    s.start_worker()
    yield s
    s.stop()


@pytest.fixture
def make_stack(own_redis: RedisServer, model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """A stack of the test's own, on its own Redis, for tests that stop or kill its processes."""
    stacks: list[Stack] = []

    def make(**settings: str) -> Stack:
        s = Stack(own_redis.url, model_dir, tmp_path, **settings)
        stacks.append(s)
        return s

    yield make
    for s in stacks:
        s.stop()
