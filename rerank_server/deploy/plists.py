"""The LaunchAgent property lists for the worker, the API and (optionally) Redis.

Pure functions from settings and this machine's paths to plist dictionaries, so what ``install``
writes can be checked without launchd. Settings travel as ``RERANK_*`` EnvironmentVariables, and the
program is always this interpreter with ``-m rerank_server``: the venv's own Python needs no
activation and no entry-point script.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from rerank_contract.defaults import THROTTLE_INTERVAL_S, WORKER_EXIT_TIMEOUT_S
from rerank_contract.settings import Settings, settings_env
from rerank_server.deploy import redis_store
from rerank_server.up import ModelSpec, worker_envs

LABEL_PREFIX = "com.rerank-server."
#: Load order; unload in reverse.
SERVICES = ("redis", "worker", "api")
#: launchd starts agents with a bare PATH; Homebrew's prefixes come first on Apple Silicon and Intel.
SYSTEM_PATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def label(service: str) -> str:
    return f"{LABEL_PREFIX}{service}"


def is_worker(service: str) -> bool:
    """``worker`` (the first model's), ``worker-2``, ``worker-3``, ... (one agent per further model)."""
    return service == "worker" or service.startswith("worker-")


def ordered(services: list[str] | set[str]) -> list[str]:
    """Load order: Redis, the workers (the first model's first), the API; unload in reverse."""
    workers = sorted((s for s in services if is_worker(s)), key=lambda s: (s != "worker", len(s), s))
    return [s for s in ("redis", *workers, "api") if s in services]


def installed(layout: Layout) -> list[str]:
    """The services whose plists this command wrote, in load order."""
    found = {
        p.name.removeprefix(LABEL_PREFIX).removesuffix(".plist") for p in layout.agents_dir.glob(f"{LABEL_PREFIX}*")
    }
    return ordered({s for s in found if s in SERVICES or is_worker(s)})


@dataclass(frozen=True)
class Layout:
    """Where the agents, their logs and Redis's config live, all under one home directory."""

    home: Path

    @property
    def agents_dir(self) -> Path:
        return self.home / "Library" / "LaunchAgents"

    @property
    def state_dir(self) -> Path:
        return self.home / ".rerank-server"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def redis_conf(self) -> Path:
        return self.state_dir / "redis.conf"

    def redis_dir(self, settings: Settings) -> Path:
        """RERANK_REDIS_DIR, its ``~`` being this layout's home."""
        return redis_store.data_dir(settings.redis_dir, self.home)

    def plist_path(self, service: str) -> Path:
        return self.agents_dir / f"{label(service)}.plist"


def service_plist(
    service: str, program: list[str], *, workdir: Path, env: dict[str, str], layout: Layout
) -> dict[str, object]:
    """One always-on agent: started at load, restarted whenever it exits, logging to files."""
    plist: dict[str, object] = {
        "Label": label(service),
        "ProgramArguments": program,
        "WorkingDirectory": str(workdir),
        "EnvironmentVariables": env,
        "RunAtLoad": True,
        "KeepAlive": True,
        "ThrottleInterval": THROTTLE_INTERVAL_S,
        "StandardOutPath": str(layout.logs_dir / f"{service}.stdout.log"),
        "StandardErrorPath": str(layout.logs_dir / f"{service}.stderr.log"),
    }
    if is_worker(service):
        plist["ExitTimeOut"] = WORKER_EXIT_TIMEOUT_S
    return plist


def redis_conf(redis_url: str, data_dir: Path) -> str:
    """redis-server config for a loopback-only Redis answering at ``redis_url``, persisting into ``data_dir``.

    The password (if the URL has one) goes in this file rather than on the command line, where
    ``ps`` would show it.
    """
    parsed = urlparse(redis_url)
    if parsed.scheme != "redis" or parsed.hostname not in LOOPBACK_HOSTS:
        raise ValueError(
            f"the launchd Redis listens on loopback only, but RERANK_REDIS_URL is {redis_url}: "
            "use redis://[:password@]127.0.0.1:<port>/0, or leave out --with-redis"
        )
    bind = "::1" if parsed.hostname == "::1" else "127.0.0.1"
    lines = [f"bind {bind}", f"port {parsed.port or 6379}", *redis_store.conf_lines(data_dir)]
    if parsed.password:
        lines.append(f"requirepass {parsed.password}")
    return "\n".join(lines) + "\n"


def build(
    settings: Settings,
    *,
    python: str,
    workdir: Path,
    layout: Layout,
    extra_env: dict[str, str],
    redis_server: str | None = None,
    models: list[ModelSpec] | None = None,
) -> dict[str, dict[str, object]]:
    """The plists by service name; Redis is included when ``redis_server`` (its binary) is given. With several
    ``models`` (``--model``, repeated), one worker agent each (``worker``, ``worker-2``, ...), the first the default."""
    env = {
        "PATH": f"{Path(python).parent}:{SYSTEM_PATH}",
        "PYTHONUNBUFFERED": "1",  # log lines reach the files as they happen
        **settings_env(settings, only_set=True),  # given ones only: defaults stay with the code
        **extra_env,
    }
    envs = worker_envs(env, models, settings.default_model) if models else [env]
    program = [python, "-m", "rerank_server"]
    plists = {
        "worker" if i == 0 else f"worker-{i + 1}": service_plist(
            "worker" if i == 0 else f"worker-{i + 1}", [*program, "worker"], workdir=workdir, env=own, layout=layout
        )
        for i, own in enumerate(envs)
    }
    plists["api"] = service_plist("api", [*program, "api"], workdir=workdir, env=envs[0], layout=layout)
    if redis_server is not None:
        plists["redis"] = service_plist(
            "redis",
            [redis_server, str(layout.redis_conf)],
            workdir=layout.state_dir,
            env={"PATH": SYSTEM_PATH},
            layout=layout,
        )
    return {name: plists[name] for name in ordered(set(plists))}
