"""The systemd units' ExecStart lines run the service, as systemd would start them (no systemd here)."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.services import Service
from tests.support.systemd_units import UNITS, env_file, localized
from tests.support.waiting import wait_until


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
