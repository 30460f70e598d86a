"""``rerank-server launchd`` run as a user runs it, and the agents (plists) it installed."""

from __future__ import annotations

import plistlib
import subprocess
from pathlib import Path

from tests.support.services import CLI

LABELS = {name: f"com.rerank-server.{name}" for name in ("redis", "worker", "api")}


def launchd(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "launchd", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def agent(home: Path, service: str) -> dict:
    return plistlib.loads((home / "Library" / "LaunchAgents" / f"{LABELS[service]}.plist").read_bytes())
