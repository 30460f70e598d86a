"""``rerank-server launchd install|uninstall|status``: run the service under launchd on a Mac.

The worker must run natively on a Mac (Docker there has no Metal/MPS), and launchd is what keeps a
process alive across crashes, logouts and reboots. ``install`` writes the LaunchAgents with this
machine's real paths and loads them into the user's GUI domain; running it again boots the loaded
agents out first, so it is safe to repeat after changing a setting. launchd restarts any service
that exits, at most every ThrottleInterval seconds: a worker that cannot start yet (exit code 3,
e.g. Redis not up at login) keeps retrying, and ``status`` shows its last exit code.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from rerank_contract import defaults
from rerank_contract.settings import Settings
from rerank_server.deploy import plists
from rerank_server.deploy.plists import SERVICES, Layout, installed, label, ordered
from rerank_server.up import ModelSpec, find_redis_server, model_specs


class DeployError(RuntimeError):
    """Something the user has to fix; the message says what."""


class Launchctl:
    """The few ``launchctl`` verbs we need, in the user's GUI domain (``gui/<uid>``)."""

    def __init__(self) -> None:
        exe = shutil.which("launchctl")
        if exe is None:
            raise DeployError(
                "launchctl not found: LaunchAgents exist only on macOS "
                "(on Linux use the systemd units in systemd/ or the Compose stack in compose/)"
            )
        self.exe = exe
        self.domain = f"gui/{os.getuid()}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.exe, *args], capture_output=True, text=True, check=False)

    def info(self, service_label: str) -> dict[str, str] | None:
        """The top-level ``key = value`` lines of ``launchctl print``, or None when not loaded."""
        result = self._run("print", f"{self.domain}/{service_label}")
        if result.returncode != 0:
            return None
        return dict(re.findall(r"^\t([^\t=][^=\n]*?) = ([^\n{]*)$", result.stdout, re.MULTILINE))

    def bootstrap(self, plist_path: Path) -> None:
        result = self._run("bootstrap", self.domain, str(plist_path))
        if result.returncode != 0:
            raise DeployError(f"launchctl bootstrap {self.domain} {plist_path} failed: {result.stderr.strip()}")

    def bootout(self, service_label: str, timeout_s: float) -> None:
        """Unload a service and wait until launchd has let it go (bootstrap fails until then)."""
        self._run("bootout", f"{self.domain}/{service_label}")
        deadline = time.monotonic() + timeout_s
        while self.info(service_label) is not None:
            if time.monotonic() > deadline:
                raise DeployError(f"{service_label} is still loaded {timeout_s:.0f}s after launchctl bootout")
            time.sleep(defaults.LAUNCHD_POLL_S)


def install(
    settings: Settings,
    *,
    layout: Layout,
    workdir: Path,
    extra_env: dict[str, str],
    with_redis: bool,
    dry_run: bool,
    out: Callable[[str], None] = print,
    models: list[ModelSpec] | None = None,
) -> int:
    """Write the agents' plists and (re)load them: Redis first, then the workers (one per model), then the API."""
    redis_server = None
    if with_redis:
        redis_server = find_redis_server()
        if redis_server is None:
            raise DeployError("--with-redis: no redis-server found on PATH (brew install redis)")
    documents = plists.build(
        settings,
        python=sys.executable,
        workdir=workdir,
        layout=layout,
        extra_env=extra_env,
        redis_server=redis_server,
        models=models,
    )
    conf = plists.redis_conf(settings.redis_url, layout.redis_dir(settings)) if with_redis else None
    if dry_run:
        for name, document in documents.items():
            out(f"# {layout.plist_path(name)}\n{plistlib.dumps(document).decode()}")
        if conf is not None:
            data = layout.redis_dir(settings)
            out(f"would write {layout.redis_conf} (mode 600) for redis-server, which keeps its data in {data}")
        out(f"would boot out the loaded agents, then run: launchctl bootstrap gui/{os.getuid()} <each plist above>")
        return 0

    launchctl = Launchctl()
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    layout.agents_dir.mkdir(parents=True, exist_ok=True)
    for name in reversed(ordered(set(documents) | set(installed(layout)))):
        if launchctl.info(label(name)) is not None:
            out(f"{label(name)}: loaded, booting it out first")
            launchctl.bootout(label(name), timeout_s=defaults.WORKER_EXIT_TIMEOUT_S + defaults.LAUNCHD_BOOTOUT_MARGIN_S)
        if name not in documents:  # a worker agent of a model no longer installed
            layout.plist_path(name).unlink(missing_ok=True)
    if conf is not None:
        layout.redis_dir(settings).mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(layout.redis_conf, conf.encode())
    for name, document in documents.items():
        path = layout.plist_path(name)
        _write_private(path, plistlib.dumps(document))  # may hold a Redis password
        launchctl.bootstrap(path)
        out(f"{label(name)}: loaded from {path}")
    out(f"logs: {layout.logs_dir}; check with: rerank-server launchd status")
    return 0


def uninstall(*, layout: Layout, out: Callable[[str], None] = print) -> int:
    """Unload every agent this command installs and delete its plist; the logs stay."""
    launchctl = Launchctl()
    for name in reversed(ordered(set(SERVICES) | set(installed(layout)))):
        if launchctl.info(label(name)) is not None:
            launchctl.bootout(label(name), timeout_s=defaults.WORKER_EXIT_TIMEOUT_S + defaults.LAUNCHD_BOOTOUT_MARGIN_S)
            out(f"{label(name)}: booted out")
        path = layout.plist_path(name)
        if path.exists():
            path.unlink()
            out(f"{label(name)}: removed {path}")
    layout.redis_conf.unlink(missing_ok=True)
    out(f"logs kept in {layout.logs_dir}")
    return 0


def status(*, layout: Layout, out: Callable[[str], None] = print) -> int:
    """Each agent's launchd state and last exit code, then the API's ``/health``.

    Returns 0 when every installed agent is running and the API answers healthy, 1 otherwise.
    """
    launchctl = Launchctl()
    healthy = True
    agents = installed(layout)
    if not agents:
        out(f"no agents installed in {layout.agents_dir}: run rerank-server launchd install")
        return 1
    for name in agents:
        info = launchctl.info(label(name))
        if info is None:
            out(f"{label(name)}: installed but not loaded")
            healthy = False
            continue
        state, exit_code = info.get("state", "unknown"), info.get("last exit code", "(never exited)")
        line = f"{label(name)}: {state}, pid {info.get('pid', '-')}, last exit code {exit_code}"
        if exit_code == str(defaults.EXIT_STARTUP_FAILED):
            line += f" (cannot start: see {layout.logs_dir / (name + '.stderr.log')})"
        out(line)
        healthy = healthy and state == "running"
    if "api" in agents:
        healthy = _report_health(layout.plist_path("api"), out) and healthy
    return 0 if healthy else 1


def _report_health(api_plist: Path, out: Callable[[str], None]) -> bool:
    env = plistlib.loads(api_plist.read_bytes())["EnvironmentVariables"]
    host = env.get("RERANK_HOST", defaults.HOST)
    port = env.get("RERANK_PORT", defaults.PORT)
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    url = f"http://{host}:{port}/health"
    try:
        body = httpx.get(url, timeout=defaults.HEALTH_CHECK_TIMEOUT_S).json()
    except (httpx.HTTPError, ValueError) as exc:
        out(f"{url}: no answer ({exc})")
        return False
    out(f"{url}: {body.get('status')}, {body.get('workers_alive', 0)} worker(s) alive, device {body.get('device')}")
    return body.get("status") == "ok"


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DeployError(f"--env expects KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """``settings``: the environment's, with the flags given to ``install`` (``rerank-server``'s main built it)."""
    layout = Layout(Path.home())
    try:
        if args.action == "install":
            return install(
                settings,
                layout=layout,
                workdir=args.workdir.resolve(),
                extra_env=_parse_env(args.env),
                with_redis=args.with_redis,
                dry_run=args.dry_run,
                models=model_specs(args.models, settings) if args.models else None,
            )
        if args.action == "uninstall":
            return uninstall(layout=layout)
        return status(layout=layout)
    except (DeployError, ValueError) as exc:
        print(f"rerank-server launchd {args.action}: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction, options: list[Callable[[argparse.ArgumentParser], None]]) -> None:
    """Add ``launchd install|uninstall|status`` to the CLI; ``options`` add the usual setting flags."""
    parser = sub.add_parser("launchd", help="install, remove or inspect the macOS LaunchAgents")
    actions = parser.add_subparsers(dest="action", required=True)
    install_parser = actions.add_parser(
        "install", help="write the LaunchAgents for this machine and (re)load them; the flags become their settings"
    )
    for add in options:
        add(install_parser)
    install_parser.add_argument(
        "--with-redis", action="store_true", help="also run a loopback-only redis-server under launchd"
    )
    install_parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment, e.g. HF_HOME=/data/hf"
    )
    install_parser.add_argument(
        "--workdir", type=Path, default=Path.cwd(), help="working directory of the services (default: here)"
    )
    install_parser.add_argument("--dry-run", action="store_true", help="print the plists, change nothing")
    actions.add_parser("uninstall", help="unload the agents and delete their plists (logs stay)")
    actions.add_parser("status", help="show each agent's state and the API's /health")
    parser.set_defaults(func=_run)
