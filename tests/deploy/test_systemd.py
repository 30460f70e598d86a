"""The systemd units: valid for systemd, hardened, and their ExecStart lines really run the service."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rerank_contract import defaults
from tests.conftest import Service, free_port, wait_until

UNITS = Path(__file__).parent.parent / "systemd"
ROOT = Path(__file__).parent.parent
INSTALL_DIR = "/opt/rerank-server"
#: Where this interpreter's ``rerank-server`` entry point is (the venv the tests run in).
VENV_BIN = Path(sys.executable).parent


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


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


@pytest.mark.e2e
def test_the_units_command_lines_run_the_service(own_redis, model_dir, tmp_path: Path) -> None:
    """Run ExecStart of rerank-worker@1 and rerank-api as systemd would, with the env file's settings."""
    api_port = free_port()
    settings = {
        **env_file(),
        "RERANK_REDIS_URL": own_redis.url,
        "RERANK_MODEL": str(model_dir),
        "RERANK_DEVICE": "cpu",
        "RERANK_PORT": str(api_port),
    }
    base_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", **settings}
    services = []
    try:
        for name in ("rerank-worker@.service", "rerank-api.service"):
            local = configparser.ConfigParser(interpolation=None)
            local.optionxform = str  # type: ignore[assignment,method-assign]
            local.read_string(localized((UNITS / name).read_text(), tmp_path / "cache"))
            service = local["Service"]
            env = dict(base_env)
            if "Environment" in service:
                key, value = service["Environment"].split("=", 1)
                env[key] = value
            args = shlex.split(service["ExecStart"])
            log = tmp_path / f"{name}.log"
            services.append(Service(args, env, log, cwd=service["WorkingDirectory"]).start())
        url = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: _workers_alive(url) == 1, 90, "the unit-started worker to be alive")
        assert httpx.get(f"{url}/health", timeout=5).json()["status"] == "ok"
    finally:
        for service in reversed(services):
            service.stop()


def _workers_alive(url: str) -> int:
    try:
        return httpx.get(f"{url}/health", timeout=2).json().get("workers_alive", 0)
    except (httpx.HTTPError, ValueError):
        return 0
