"""The systemd units: valid for systemd and hardened (their ExecStart lines run: tests/e2e/test_systemd.py)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from rerank_contract import defaults
from tests.support.systemd_units import INSTALL_DIR, UNITS, env_file, localized


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


@pytest.mark.parametrize("name", ["rerank-api.service", "rerank-worker@.service"])
def test_units_are_supervised_hardened_and_read_the_env_file(name: str) -> None:
    service = unit(name)["Service"]
    assert set(unit(name).sections()) == {"Unit", "Service", "Install"}
    assert service["ExecStart"].startswith(f"{INSTALL_DIR}/.venv/bin/rerank-server ")
    assert service["EnvironmentFile"] == "/etc/rerank-server/env"
    assert service["WorkingDirectory"] == INSTALL_DIR
    assert service["Restart"] == "always"
    assert "RestartPreventExitStatus" not in service  # exit 3 at boot is often passing: retry (see the unit)
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "RestrictSUIDSGID"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert service["User"] == "rerank"
    assert unit(name)["Install"]["WantedBy"] == "multi-user.target"


def test_worker_unit_keeps_the_gpu_and_a_writable_model_cache() -> None:
    service = unit("rerank-worker@.service")["Service"]
    assert "PrivateDevices" not in service  # /dev/nvidia* must stay visible
    assert service["CacheDirectory"] == "rerank-server"
    assert service["Environment"] == "HF_HOME=/var/cache/rerank-server/huggingface"
    # Room to finish the job in hand after SIGTERM: the same as launchd's ExitTimeOut and up's wait.
    assert int(service["TimeoutStopSec"]) == defaults.WORKER_EXIT_TIMEOUT_S
    assert unit("rerank-api.service")["Service"]["PrivateDevices"] == "yes"


def test_env_example_names_only_real_settings() -> None:
    from rerank_contract.settings import Settings

    for key in env_file():
        assert key.removeprefix("RERANK_").lower() in Settings.model_fields, key


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    paths = []
    for name, as_name in [
        ("rerank-api.service", "rerank-api.service"),
        ("rerank-worker@.service", "rerank-worker@1.service"),
    ]:
        path = tmp_path / as_name
        path.write_text(localized((UNITS / name).read_text(), tmp_path / "cache"))
        paths.append(str(path))
    result = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # unknown keys and bad values are only warnings
