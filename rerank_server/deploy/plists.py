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

LABEL_PREFIX = "com.rerank-server."
#: Load order; unload in reverse.
SERVICES = ("redis", "worker", "api")
#: launchd starts agents with a bare PATH; Homebrew's prefixes come first on Apple Silicon and Intel.
SYSTEM_PATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def label(service: str) -> str:
    return f"{LABEL_PREFIX}{service}"


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
    if service == "worker":
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
) -> dict[str, dict[str, object]]:
    """The plists by service name; Redis is included when ``redis_server`` (its binary) is given."""
    env = {
        "PATH": f"{Path(python).parent}:{SYSTEM_PATH}",
        "PYTHONUNBUFFERED": "1",  # log lines reach the files as they happen
        **settings_env(settings, only_set=True),  # given ones only: defaults stay with the code
        **extra_env,
    }
    plists = {
        name: service_plist(name, [python, "-m", "rerank_server", name], workdir=workdir, env=env, layout=layout)
        for name in ("worker", "api")
    }
    if redis_server is not None:
        plists["redis"] = service_plist(
            "redis",
            [redis_server, str(layout.redis_conf)],
            workdir=layout.state_dir,
            env={"PATH": SYSTEM_PATH},
            layout=layout,
        )
    return {name: plists[name] for name in SERVICES if name in plists}
