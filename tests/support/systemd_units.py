"""The systemd units in systemd/, and the same units as they would run from this checkout and venv."""

from __future__ import annotations

import sys
from pathlib import Path

UNITS = Path(__file__).parents[2] / "systemd"
ROOT = Path(__file__).parents[2]
INSTALL_DIR = "/opt/rerank-server"
#: Where this interpreter's ``rerank-server`` entry point is (the venv the tests run in).
VENV_BIN = Path(sys.executable).parent


def localized(text: str, cache: Path) -> str:
    """The unit as it would be on this machine: the checkout and venv here instead of /opt/rerank-server."""
    return (
        text.replace(f"{INSTALL_DIR}/.venv/bin/", f"{VENV_BIN}/")
        .replace(INSTALL_DIR, str(ROOT))
        .replace("/var/cache/rerank-server", str(cache))
    )


def env_file() -> dict[str, str]:
    lines = (UNITS / "rerank-server.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
