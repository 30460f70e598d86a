"""``scripts/_venv.sh``: installs with the tested versions (constraints.txt) and says what it does the first time."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

# Stands in for python3 and for .venv/bin/python: records each pip call instead of installing.
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  cp "$0" "$3/bin/python"
  printf 'export PATH="%s/bin:$PATH"\\n' "$(cd "$3" && pwd)" > "$3/bin/activate"
  exit 0
fi
echo "$*" >> "$PIP_CALLS"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "_venv.sh", root / "scripts")
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, root)
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return root


def source(checkout: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = checkout.parent / "pip-calls"
    calls.unlink(missing_ok=True)
    environment = {"PATH": os.environ["PATH"], "PYTHON": str(checkout.parent / "python3"), "PIP_CALLS": str(calls)}
    script = f'source "{checkout}/scripts/_venv.sh" worker,test'
    done = subprocess.run(["bash", "-c", script], env={**environment, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_the_first_install_pins_every_version_and_says_what_it_does(checkout: Path) -> None:
    done, calls = source(checkout)
    assert calls[-1] == "-m pip install --quiet -c constraints.txt torch==2.13.0 -e .[worker,test]"
    lines = done.stderr.splitlines()
    assert lines[0] == "rerank-server: creating the virtual environment .venv"
    assert lines[1].startswith("rerank-server: installing torch==2.13.0 and the project with [worker,test]")
    assert "the first time takes 1-3 minutes" in lines[1]
    assert lines[-1].startswith("rerank-server: installed in ")

    done, calls = source(checkout)  # installed: nothing to do, nothing said
    assert calls == [] and done.stderr == ""
    (checkout / "constraints.txt").touch()  # a new lock reinstalls
    os.utime(checkout / "constraints.txt", (1e10, 1e10))
    assert source(checkout)[1]


def test_an_own_torch_replaces_only_the_locks_torch(checkout: Path) -> None:
    _, calls = source(checkout, TORCH_SPEC="torch>=2.4")
    assert calls[-1] == "-m pip install --quiet -c .venv/constraints-own-torch.txt torch>=2.4 -e .[worker,test]"
    own = (checkout / ".venv" / "constraints-own-torch.txt").read_text().splitlines()
    lock = (checkout / "constraints.txt").read_text().splitlines()
    assert [line for line in lock if not line.startswith("torch==")] == own
    assert "torch==2.13.0" in lock
