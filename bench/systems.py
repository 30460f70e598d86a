"""The systems the benchmark runs side by side, as processes: rerank-server, the seed's design, infinity-emb.

Each is a context manager that starts the system's processes, waits until it answers, yields a
:class:`System` and stops everything on exit; plus the process helpers they share.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import load

HERE = Path(__file__).parent
INFINITY_VENV = HERE / ".venv-infinity"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None, ready_url: str | None = None):
    """Run ``args`` until the block ends; wait for ``ready_url`` to answer 200 first."""
    with log.open("wb") as out:
        full_env = {**os.environ, **OFFLINE, **(env or {})}
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=full_env)
        try:
            deadline = time.monotonic() + 180
            while ready_url is not None:
                if proc.poll() is not None:
                    raise RuntimeError(f"{args[0]} exited ({proc.returncode}); see {log}")
                try:
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{ready_url} did not come up; see {log}")
                time.sleep(0.2)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_for_redis(port: int, log: Path) -> None:
    from redis import Redis

    client = Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return
        except Exception as exc:  # redis-py's ConnectionError until the server listens
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not answer; see {log}") from exc
        time.sleep(0.1)


@dataclass(frozen=True)
class Setup:
    """The model every system serves in this run, and where and how it runs."""

    model_dir: Path
    device: str
    dtype: str

    def cross_encoder(self):
        import torch
        from sentence_transformers import CrossEncoder

        return CrossEncoder(str(self.model_dir), device=self.device, model_kwargs={"dtype": getattr(torch, self.dtype)})


def seed_body(query: str, candidates: list[str]) -> tuple[str, dict]:
    return "/v1/rerank", {"query": query, "candidates": candidates}


def infinity_body(query: str, candidates: list[str]) -> tuple[str, dict]:
    return "/rerank", {"query": query, "documents": candidates, "model": "bench", "return_documents": False}


@dataclass
class System:
    """A server under test, up for the whole measurement, and what was measured of it."""

    name: str
    url: str
    body: load.BodyFn
    pids: dict[str, int]
    latency: dict[int, load.Run] = field(default_factory=dict)
    throughput: dict[int, load.Run] = field(default_factory=dict)
    rss: dict[str, float | None] = field(default_factory=dict)
    redis_url: str | None = None


@contextmanager
def service(setup: Setup, batch_size: int, logs: Path, extra_env: dict[str, str] | None = None) -> Iterator[System]:
    """rerank-server: a redis-server, ``rerank-server api`` and ``rerank-server worker`` (``extra_env``: more
    ``RERANK_*`` settings, for A/B runs)."""
    redis_port, api_port = free_port(), free_port()
    url = f"http://127.0.0.1:{api_port}"
    env = {
        "RERANK_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "RERANK_MODEL": str(setup.model_dir),
        "RERANK_DEVICE": setup.device,
        "RERANK_DTYPE": setup.dtype,
        "RERANK_BATCH_SIZE": str(batch_size),
        "RERANK_PORT": str(api_port),
        "RERANK_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    cli = [sys.executable, "-m", "rerank_server"]
    with ExitStack() as stack:
        redis = stack.enter_context(
            process(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"], logs / "redis.log")
        )
        wait_for_redis(redis_port, logs / "redis.log")
        api = stack.enter_context(process([*cli, "api"], logs / "api.log", env, ready_url=f"{url}/openapi.json"))
        worker = stack.enter_context(process([*cli, "worker"], logs / "worker.log", env, ready_url=f"{url}/health"))
        pids = {"api": api.pid, "worker": worker.pid, "redis": redis.pid}
        yield System("rerank-server", url, seed_body, pids, redis_url=env["RERANK_REDIS_URL"])


@contextmanager
def baseline(setup: Setup, logs: Path) -> Iterator[System]:
    """The seed's design: the model inside the FastAPI process (``bench/baseline_app.py``)."""
    port = free_port()
    args = [sys.executable, "-m", "bench.baseline_app", str(setup.model_dir), str(port), setup.device, setup.dtype]
    url = f"http://127.0.0.1:{port}"
    with process(args, logs / "baseline.log", ready_url=f"{url}/openapi.json") as proc:
        yield System("in-process FastAPI (seed design)", url, seed_body, {"server": proc.pid})


def ensure_infinity() -> Path | None:
    exe = INFINITY_VENV / "bin" / "infinity_emb"
    if not exe.exists():
        print("installing infinity-emb into bench/.venv-infinity (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(INFINITY_VENV)], check=True)
        pip = [str(INFINITY_VENV / "bin" / "pip"), "install", "-q"]
        done = subprocess.run([*pip, "infinity-emb[server,torch]==0.0.78", "torch==2.13.0"])
        if done.returncode != 0:
            return None
    return exe


@contextmanager
def infinity(setup: Setup, batch_size: int, logs: Path) -> Iterator[System | None]:
    """infinity-emb serving the same model folder, from its own venv; ``None`` if it cannot be installed."""
    exe = ensure_infinity()
    if exe is None:
        yield None
        return
    port = free_port()
    args = [
        str(exe), "v2", "--model-id", str(setup.model_dir), "--served-model-name", "bench", "--engine", "torch",
        "--device", setup.device, "--dtype", setup.dtype, "--no-bettertransformer", "--batch-size", str(batch_size),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with process(args, logs / "infinity.log", {"DO_NOT_TRACK": "1"}, ready_url=f"{url}/health") as proc:
        yield System("infinity-emb 0.0.78", url, infinity_body, {"server": proc.pid})
