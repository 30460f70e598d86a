"""The agents ``rerank-server launchd install`` writes, run as launchd would run them (no launchd here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import fakes
from tests.support.launchd_agents import agent, launchd
from tests.support.ports import free_port
from tests.support.seed import SEED_CANDIDATES, SEED_QUERY
from tests.support.services import Service
from tests.support.waiting import wait_until

CLIENT_EXAMPLE = Path(__file__).parents[2] / "compose" / "client_example.py"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> fakes.Fakes:
    """Fake launchctl/tailscale/socat; no RERANK_* variable or .env file of the developer's is seen."""
    for key in [k for k in os.environ if k.startswith("RERANK_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return fakes.make(tmp_path / "fakes")


def test_the_installed_agents_run_the_service(fake, model_dir, tmp_path) -> None:
    """Start Redis, the worker and the API exactly as the plists say, then ask the API and ``status``."""
    home = tmp_path / "home"
    redis_url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    api_port = free_port()
    install = launchd(
        fake.env(home),
        "install",
        "--with-redis",
        "--redis-url",
        redis_url,
        "--model",
        str(model_dir),
        "--device",
        "cpu",
        "--port",
        str(api_port),
        "--env",
        "HF_HUB_OFFLINE=1",
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr

    services = []
    try:
        for name in ("redis", "worker", "api"):
            doc = agent(home, name)
            log_path = Path(doc["StandardErrorPath"])
            log_path.parent.mkdir(parents=True, exist_ok=True)
            env = {**doc["EnvironmentVariables"], "HOME": str(home)}  # launchd sets HOME for agents
            services.append(Service(doc["ProgramArguments"], env, log_path, cwd=doc["WorkingDirectory"]).start())
        url = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: _health(url).get("workers_alive") == 1, 90, "the launchd-started worker to be alive")

        response = httpx.post(f"{url}/v1/rerank", json={"query": SEED_QUERY, "candidates": SEED_CANDIDATES})
        assert response.status_code == 200
        assert response.json()["results"][-1]["index"] == 1

        status = launchd(fake.env(home), "status")
        assert status.returncode == 0, status.stdout
        assert f"{url}/health: ok, 1 worker(s) alive, device cpu" in status.stdout

        # What compose/client.example.yaml runs on another machine: HTTP, then bulk jobs on the password Redis.
        client_env = {"PATH": os.environ["PATH"], "RERANK_URL": url, "RERANK_REDIS_URL": redis_url}
        client = subprocess.run(
            [sys.executable, str(CLIENT_EXAMPLE)], env=client_env, capture_output=True, text=True, timeout=120
        )
        assert client.returncode == 0, client.stderr
    finally:
        for service in reversed(services):
            service.stop()
    assert "worker" in (home / ".rerank-server" / "logs" / "worker.stderr.log").read_text()
    lines = client.stdout.splitlines()
    assert lines[0] == "health: ok, 1 worker(s), device cpu"
    assert re.fullmatch(r"http: \[\(\d, [\d.]+\), \(\d, [\d.]+\), \(1, [\d.]+\)\]", lines[1]), lines[1]
    bulk = [line.split(": ")[1] for line in lines[2:]]
    assert bulk[0].endswith(", 1]") and bulk[1].startswith("[1,")  # "cooking recipes" last, then first


def _health(url: str) -> dict:
    try:
        return httpx.get(f"{url}/health", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}
