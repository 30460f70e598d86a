"""Shared fixtures: a trained tiny model, private redis-servers, and real service processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis import Redis

from tests import tiny_model

pytest_plugins = ["tests.worker_fixtures"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEED_QUERY = "machine learning"
SEED_CANDIDATES = ["deep learning", "cooking recipes", "neural networks"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CrossEncoder trained to rank each topic's passages first."""
    return tiny_model.build(tmp_path_factory.mktemp("tiny-cross-encoder"))


@pytest.fixture(scope="session")
def cross_encoder(model_dir: Path):
    """The same model loaded in the test process: the reference for every score check."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(model_dir), device="cpu")


@pytest.fixture(scope="session")
def reranker(model_dir: Path):
    """The model runtime in this process, as a worker holds it, for in-process worker tests."""
    from rerank_worker.runtime import Reranker

    return Reranker(str(model_dir), device="cpu", batch_size=16, max_length=None)


@pytest.fixture(scope="session")
def decoder_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Qwen3-Reranker-style decoder reranker in both folder layouts: ``hub`` (plain transformers, as the
    hub ships it) and ``st`` (saved by sentence-transformers, activation Identity). Random weights."""
    from tests import tiny_decoder

    root = tmp_path_factory.mktemp("decoders")
    hub = tiny_decoder.build(root / "hub")
    return {"hub": hub, "st": tiny_decoder.build_st(hub, root / "st")}


def assert_error(response: httpx.Response, status: int, error_type: str) -> str:
    """Check an error answer's status and ``{"error", "error_type", "detail"}`` body; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type", "detail"} and body["detail"] == body["error"]
    assert body["error_type"] == error_type
    return body["error"]


@dataclass
class RedisServer:
    """A redis-server of the test's own, on a free port."""

    port: int
    proc: subprocess.Popen[bytes] | None = None
    password: str | None = None
    #: A folder with ``ca.crt``, ``redis.crt`` and ``redis.key``: serve TLS only (``rediss://``).
    tls: Path | None = None
    binary: str = "redis-server"
    #: A folder for an append-only file (fsync every second), so a restart keeps what Redis acknowledged.
    appendonly_dir: Path | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls / 'ca.crt'}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--save", ""]
        if self.appendonly_dir is None:
            args += ["--appendonly", "no"]
        else:
            args += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.appendonly_dir)]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(self.tls / "redis.crt"), "--tls-key-file", str(self.tls / "redis.key")]
            args += ["--tls-ca-cert-file", str(self.tls / "ca.crt")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_until(self._ping, 10, f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def client(self) -> Redis:
        return Redis.from_url(self.url, socket_timeout=5)

    def _ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:
            return False


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; .ci/run installs it")
    server = RedisServer(port=free_port())
    server.start()
    yield server
    server.stop()


#: The test being set up or run, so that :meth:`Service.start` can tell an e2e test from a unit test.
_CURRENT_TEST: dict[str, pytest.Item] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _CURRENT_TEST["item"] = item  # before its fixtures (a module's stack included) are set up


@dataclass
class Service:
    """A ``rerank-server`` subcommand running as a real process, its output kept in a log file."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def start(self) -> Service:
        item = _CURRENT_TEST.get("item")
        if item is not None and item.get_closest_marker("e2e") is None:  # `-m "not e2e"` must start no service
            pytest.fail(f"{item.nodeid} starts {' '.join(self.args[-2:])} but is not marked e2e", pytrace=False)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The process stopped (SIGSTOP) for the block: alive to the OS, deaf to Redis; resumed after."""
        self.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.signal(signal.SIGCONT)

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def service_env(redis_url: str, model_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANK_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        RERANK_REDIS_URL=redis_url,
        RERANK_MODEL=str(model_dir),
        RERANK_DEVICE="cpu",
        RERANK_LOG_LEVEL="INFO",
        RERANK_BATCH_SIZE="16",  # measured (auto) by tests/test_e2e_service.py only: every start skips it
    )
    env.update({f"RERANK_{k.upper()}": v for k, v in settings.items()})
    # `up` persists its private Redis into RERANK_REDIS_DIR (default ~/.rerank-server/redis): never the user's.
    env.setdefault("RERANK_REDIS_DIR", tempfile.mkdtemp(prefix="rerank-redis-"))
    return env


CLI = [sys.executable, "-m", "rerank_server"]


class Stack:
    """Real worker and API processes against one Redis, as a user would run them."""

    def __init__(self, redis_url: str, model_dir: Path, logs: Path, **settings: str) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.env = service_env(redis_url, model_dir, PORT=str(self.port), **settings)
        self.logs = logs
        self.workers: list[Service] = []
        self.api: Service | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start_worker(self, wait: bool = True) -> Service:
        worker = Service([*CLI, "worker"], self.env, self.logs / f"worker{len(self.workers)}.log").start()
        self.workers.append(worker)
        if wait:
            expected = sum(1 for w in self.workers if w.proc and w.proc.poll() is None)
            wait_until(lambda: self.health().get("workers_alive", 0) >= expected, 60, "worker heartbeat")
        return worker

    def start_api(self) -> Service:
        self.api = Service([*CLI, "api"], self.env, self.logs / "api.log").start()
        wait_until(self._api_up, 30, "API to answer")
        return self.api

    def _api_up(self) -> bool:
        if self.api is not None and self.api.proc is not None and self.api.proc.poll() is not None:
            raise RuntimeError(f"the API exited ({self.api.proc.returncode}):\n{self.api.log()[-3000:]}")
        try:
            httpx.get(f"{self.url}/health", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    def health(self) -> dict:
        try:
            return httpx.get(f"{self.url}/health", timeout=5).json()
        except httpx.HTTPError:
            return {}

    def rerank(self, query: str, candidates: list[str], timeout: float = 30) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/rerank", json={"query": query, "candidates": candidates}, timeout=timeout)

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def flushed_redis(redis_server: RedisServer) -> RedisServer:
    redis_server.client().flushall()
    return redis_server


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
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for one test alone: no other test's worker listens on it."""
    server = RedisServer(port=free_port())
    server.start()
    yield server
    server.stop()


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
