"""setup-socat.sh with fake launchctl/tailscale/socat: what it writes, what it loads, when it refuses."""

from __future__ import annotations

import os
import plistlib
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import fakes
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

SCRIPT = Path(__file__).parents[2] / "setup-socat.sh"
UID = os.getuid()


@pytest.fixture
def fake(tmp_path: Path) -> fakes.Fakes:
    return fakes.make(tmp_path / "fakes")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def plist_path(home: Path, label: str = "com.user.rerank-socat") -> Path:
    return home / "Library" / "LaunchAgents" / f"{label}.plist"


def test_forwards_the_tailscale_address_to_loopback(fake, tmp_path) -> None:
    result = run(fake.env(tmp_path))
    assert result.returncode == 0, result.stderr

    agent = plistlib.loads(plist_path(tmp_path).read_bytes())
    assert agent["Label"] == "com.user.rerank-socat"
    assert agent["ProgramArguments"] == [
        str(fake.root / "bin-launchctl-tailscale-socat" / "socat"),
        "-d",
        "TCP4-LISTEN:8080,bind=100.101.102.103,reuseaddr,fork",
        "TCP4:127.0.0.1:8080",
    ]
    assert agent["KeepAlive"] is True and agent["RunAtLoad"] is True
    assert agent["StandardErrorPath"] == str(tmp_path / ".rerank-server" / "logs" / "socat.stderr.log")
    assert (tmp_path / ".rerank-server" / "logs").is_dir()
    assert "tailscale ip -4" in fake.calls("tailscale")
    assert fake.calls("launchctl bootstrap") == [f"launchctl bootstrap gui/{UID} {plist_path(tmp_path)}"]
    assert fake.loaded() == {"com.user.rerank-socat"}
    assert "curl http://100.101.102.103:8080/health" in result.stdout


def test_rerun_unchanged_does_nothing_and_a_new_address_reloads(fake, tmp_path) -> None:
    assert run(fake.env(tmp_path)).returncode == 0
    fake.clear()

    again = run(fake.env(tmp_path))
    assert again.returncode == 0, again.stderr
    assert "unchanged and loaded" in again.stdout
    assert not fake.calls("launchctl boot")

    moved = run(fake.env(tmp_path, FAKE_TAILSCALE_IP="100.64.0.9"))
    assert moved.returncode == 0, moved.stderr
    assert fake.calls("launchctl boot") == [
        f"launchctl bootout gui/{UID}/com.user.rerank-socat",
        f"launchctl bootstrap gui/{UID} {plist_path(tmp_path)}",
    ]
    assert "bind=100.64.0.9" in plist_path(tmp_path).read_text()


def test_dry_run_prints_the_plan_and_changes_nothing(fake, tmp_path) -> None:
    result = run(fake.env(tmp_path), "--dry-run", "--port", "9000")
    assert result.returncode == 0, result.stderr
    assert "TCP4-LISTEN:9000,bind=100.101.102.103,reuseaddr,fork" in result.stdout
    assert f"launchctl bootstrap gui/{UID} {plist_path(tmp_path)}" in result.stdout
    assert not (tmp_path / "Library").exists()
    assert not (tmp_path / ".rerank-server").exists()
    assert fake.calls("launchctl") == []


@pytest.mark.parametrize(
    ("tools", "env", "message"),
    [
        (("launchctl", "socat"), {}, "tailscale not found"),
        (("launchctl", "tailscale", "socat"), {"FAKE_TAILSCALE_IP": ""}, "no Tailscale IPv4 address"),
        (("launchctl", "tailscale"), {}, "socat not found: brew install socat"),
    ],
)
def test_missing_tools_are_named(fake, tmp_path, tools, env, message) -> None:
    result = run(fake.env(tmp_path, tools=tools, **env))
    assert result.returncode != 0
    assert message in result.stderr
    assert not plist_path(tmp_path).exists()
    assert not fake.calls("launchctl bootstrap")


def test_redis_is_forwarded_only_with_a_password(fake, tmp_path) -> None:
    open_redis = RedisServer(port=free_port())
    open_redis.start()
    try:
        refused = run(fake.env(tmp_path), "--with-redis", "--redis-port", str(open_redis.port))
    finally:
        open_redis.stop()
    assert refused.returncode != 0
    assert "answers without a password" in refused.stderr
    assert not fake.loaded()

    nothing = run(fake.env(tmp_path), "--with-redis", "--redis-port", str(free_port()))
    assert nothing.returncode != 0
    assert "no Redis answers" in nothing.stderr

    locked = RedisServer(port=free_port(), password="s3cret")
    locked.start()
    try:
        result = run(fake.env(tmp_path), "--with-redis", "--redis-port", str(locked.port))
    finally:
        locked.stop()
    assert result.returncode == 0, result.stderr
    redis_agent = plistlib.loads(plist_path(tmp_path, "com.user.rerank-socat-redis").read_bytes())
    assert redis_agent["ProgramArguments"][2:] == [
        f"TCP4-LISTEN:{locked.port},bind=100.101.102.103,reuseaddr,fork",
        f"TCP4:127.0.0.1:{locked.port}",
    ]
    assert redis_agent["StandardErrorPath"].endswith("/.rerank-server/logs/socat-redis.stderr.log")
    assert fake.loaded() == {"com.user.rerank-socat", "com.user.rerank-socat-redis"}


def test_uninstall_unloads_and_deletes_both_agents(fake, tmp_path) -> None:
    locked = RedisServer(port=free_port(), password="s3cret")
    locked.start()
    try:
        assert run(fake.env(tmp_path), "--with-redis", "--redis-port", str(locked.port)).returncode == 0
    finally:
        locked.stop()
    fake.clear()
    result = run(fake.env(tmp_path), "--uninstall")
    assert result.returncode == 0, result.stderr
    assert fake.calls("launchctl bootout") == [
        f"launchctl bootout gui/{UID}/com.user.rerank-socat",
        f"launchctl bootout gui/{UID}/com.user.rerank-socat-redis",
    ]
    assert not fake.loaded()
    assert not list((tmp_path / "Library" / "LaunchAgents").iterdir())


def test_launch_agents_dir_override(fake, tmp_path) -> None:
    agents = tmp_path / "agents"
    assert run(fake.env(tmp_path, LAUNCH_AGENTS_DIR=str(agents))).returncode == 0
    assert (agents / "com.user.rerank-socat.plist").exists()
    assert not (tmp_path / "Library").exists()


def test_the_generated_socat_command_forwards(fake, tmp_path) -> None:
    """Run the plist's ProgramArguments with the real socat: <address>:port reaches 127.0.0.1:port.

    The stand-in "Tailscale address" is 127.0.0.2, another loopback address, so no traffic leaves the host.
    """
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("the real socat is not installed (apt install socat; .ci/run installs it)")
    port = free_port()
    assert run(fake.env(tmp_path, FAKE_TAILSCALE_IP="127.0.0.2"), "--port", str(port)).returncode == 0
    program = plistlib.loads(plist_path(tmp_path).read_bytes())["ProgramArguments"]
    backend = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    forwarder = subprocess.Popen([socat, *program[1:]], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening("127.0.0.2", port), 10, "socat to listen on 127.0.0.2")
        wait_until(lambda: _listening("127.0.0.1", port), 10, "the backend to listen")
        (tmp_path / "health").write_text("ok")
        assert httpx.get(f"http://127.0.0.2:{port}/health", timeout=5).text == "ok"
    finally:
        forwarder.terminate()
        backend.terminate()
        forwarder.wait(10)
        backend.wait(10)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0
