"""``rerank-server`` subcommands as real processes: one :class:`Service`, or a worker-and-API :class:`Stack`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from redis import Redis

from rerank_contract.jobs import worker_key
from tests.support.e2e_guard import refuse_outside_e2e
from tests.support.ports import free_port
from tests.support.waiting import wait_until


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
        refuse_outside_e2e(" ".join(self.args[-2:]))  # `-m "not e2e"` must start no service
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stopped(self) -> bool:
        """Every thread of the process is stopped: SIGSTOP takes effect after ``kill`` returns, not in it."""
        assert self.proc is not None
        try:
            stats = [task / "stat" for task in Path(f"/proc/{self.proc.pid}/task").iterdir()]
            return all(stat.read_text().rpartition(")")[2].split()[0] == "T" for stat in stats)
        except FileNotFoundError:  # a thread ended meanwhile: look again
            return False

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The process stopped (SIGSTOP) for the block: alive to the OS, deaf to Redis; resumed after."""
        self.signal(signal.SIGSTOP)
        try:
            wait_until(self.stopped, 10, f"{self.args[-1]} to stop", interval=0.001)
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
        RERANK_BATCH_SIZE="16",  # measured (auto) by tests/e2e/test_service.py only: every start skips it
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

    def next_heartbeat(self, worker_name: str) -> None:
        """Return once the worker has published its record again (each heartbeat resets the record's TTL)."""
        redis = Redis.from_url(self.redis_url, socket_timeout=5)
        key = worker_key(worker_name)
        last = redis.pttl(key)

        def rewritten() -> bool:
            nonlocal last
            ttl = redis.pttl(key)
            fresh, last = ttl > last, ttl  # the TTL only counts down between heartbeats
            return fresh

        wait_until(rewritten, 30, f"{worker_name}'s next heartbeat", interval=0.01)

    def rerank(self, query: str, candidates: list[str], timeout: float = 30) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/rerank", json={"query": query, "candidates": candidates}, timeout=timeout)

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        for worker in self.workers:
            worker.stop()
