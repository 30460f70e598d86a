"""``rerank-server launchd``: the plists it writes and the launchctl calls it makes (run: tests/e2e/test_launchd.py)."""

from __future__ import annotations

import os
import plistlib
import stat
import sys
from pathlib import Path

import pytest

from rerank_contract.settings import Settings
from rerank_server.deploy import plists
from tests.support import fakes
from tests.support.launchd_agents import LABELS, agent, launchd
from tests.support.ports import free_port

UID = os.getuid()


@pytest.fixture(autouse=True)
def _only_given_settings(clean_env: None) -> None:
    """Settings built here see no RERANK_* variable or .env file of the developer's."""


@pytest.fixture
def fake(tmp_path: Path) -> fakes.Fakes:
    return fakes.make(tmp_path / "fakes")


def test_plists_hold_this_machines_paths_settings_and_supervision(tmp_path) -> None:
    layout = plists.Layout(tmp_path)
    settings = Settings(redis_url="redis://:pw@127.0.0.1:6390/0", model="/models/m", port=9000)
    built = plists.build(
        settings,
        python="/venv/bin/python",
        workdir=Path("/srv/rerank"),
        layout=layout,
        extra_env={"HF_HOME": "/data/hf"},
        redis_server="/opt/homebrew/bin/redis-server",
    )
    assert list(built) == ["redis", "worker", "api"]
    parsed = {name: plistlib.loads(plistlib.dumps(doc)) for name, doc in built.items()}

    for name in ("worker", "api"):
        doc = parsed[name]
        assert doc["Label"] == LABELS[name]
        assert doc["ProgramArguments"] == ["/venv/bin/python", "-m", "rerank_server", name]
        assert doc["WorkingDirectory"] == "/srv/rerank"
        assert doc["RunAtLoad"] is True and doc["KeepAlive"] is True
        assert doc["ThrottleInterval"] == plists.THROTTLE_INTERVAL_S
        assert doc["StandardOutPath"] == str(tmp_path / ".rerank-server" / "logs" / f"{name}.stdout.log")
        assert doc["StandardErrorPath"] == str(tmp_path / ".rerank-server" / "logs" / f"{name}.stderr.log")
        env = doc["EnvironmentVariables"]
        assert env["PATH"].startswith("/venv/bin:/opt/homebrew/bin:")
        assert env["RERANK_REDIS_URL"] == "redis://:pw@127.0.0.1:6390/0"
        assert env["RERANK_MODEL"] == "/models/m"
        assert env["RERANK_PORT"] == "9000"
        assert env["HF_HOME"] == "/data/hf"
        assert "RERANK_DEVICE" not in env  # defaults stay with the code
    assert parsed["worker"]["ExitTimeOut"] == plists.WORKER_EXIT_TIMEOUT_S
    assert parsed["redis"]["ProgramArguments"] == ["/opt/homebrew/bin/redis-server", str(layout.redis_conf)]
    assert parsed["redis"]["KeepAlive"] is True


def test_install_writes_the_real_api_key_not_its_mask(fake, tmp_path) -> None:
    """RERANK_API_KEY set when installing reaches both agents as itself (str() of a SecretStr is asterisks)."""
    home = tmp_path / "home"
    env = fake.env(home, RERANK_API_KEY="k3y-from-the-environment")
    result = launchd(env, "install", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("worker", "api"):
        written = agent(home, name)["EnvironmentVariables"]
        assert written["RERANK_API_KEY"] == "k3y-from-the-environment", name
    assert "*****" not in (home / "Library" / "LaunchAgents" / f"{LABELS['api']}.plist").read_text()


def test_plists_write_settings_as_settings_reads_them_back(tmp_path) -> None:
    """Every kind of value (secret, bool, Literal, None) survives the trip through EnvironmentVariables."""
    given = Settings(api_key="s3cret", warmup=False, dtype="float16", log_level="DEBUG", max_length=None)
    built = plists.build(
        given, python="/venv/bin/python", workdir=tmp_path, layout=plists.Layout(tmp_path), extra_env={}
    )
    env = built["api"]["EnvironmentVariables"]
    assert (env["RERANK_API_KEY"], env["RERANK_WARMUP"], env["RERANK_DTYPE"]) == ("s3cret", "false", "float16")
    assert "RERANK_MAX_LENGTH" not in env  # unset: the model's own
    read_back = Settings(**{k.removeprefix("RERANK_").lower(): v for k, v in env.items() if k.startswith("RERANK_")})
    assert read_back == given


def test_redis_conf_is_loopback_only_persistent_and_keeps_the_password_off_the_command_line() -> None:
    conf = plists.redis_conf("redis://:s3cret@127.0.0.1:6390/0", Path("/Users/me/my data"))
    assert conf.splitlines() == [
        "bind 127.0.0.1",
        "port 6390",
        'dir "/Users/me/my data"',
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "requirepass s3cret",
    ]
    with pytest.raises(ValueError, match="loopback only"):
        plists.redis_conf("redis://:pw@10.0.0.5:6379/0", Path("/data"))


def test_redis_dir_defaults_to_the_layouts_home_and_follows_the_setting(tmp_path) -> None:
    layout = plists.Layout(tmp_path)
    assert layout.redis_dir(Settings()) == tmp_path / ".rerank-server" / "redis"
    assert layout.redis_dir(Settings(redis_dir="/srv/redis")) == Path("/srv/redis")


def test_install_writes_private_plists_and_bootstraps_in_order(fake, tmp_path) -> None:
    home = tmp_path / "home"
    env = fake.env(home)
    args = ["install", "--with-redis", "--redis-url", "redis://:pw@127.0.0.1:6390/0", "--port", "9000"]
    result = launchd(env, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    agents = home / "Library" / "LaunchAgents"
    assert fake.calls("launchctl bootstrap") == [
        f"launchctl bootstrap gui/{UID} {agents / (LABELS[name] + '.plist')}" for name in ("redis", "worker", "api")
    ]
    assert fake.loaded() == set(LABELS.values())
    assert agent(home, "worker")["ProgramArguments"] == [sys.executable, "-m", "rerank_server", "worker"]
    assert agent(home, "api")["WorkingDirectory"] == str(tmp_path)
    for path in [*agents.iterdir(), home / ".rerank-server" / "redis.conf"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert "requirepass pw" in (home / ".rerank-server" / "redis.conf").read_text()
    assert f'dir "{home / ".rerank-server" / "redis"}"' in (home / ".rerank-server" / "redis.conf").read_text()
    assert (home / ".rerank-server" / "redis").is_dir()  # redis-server does not create its dir
    assert (home / ".rerank-server" / "logs").is_dir()

    fake.clear()
    again = launchd(env, *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    boots = [c for c in fake.calls("launchctl") if "print" not in c]
    assert boots == [
        *(f"launchctl bootout gui/{UID}/{LABELS[name]}" for name in ("api", "worker", "redis")),
        *(f"launchctl bootstrap gui/{UID} {agents / (LABELS[name] + '.plist')}" for name in ("redis", "worker", "api")),
    ]


def test_one_worker_agent_per_model_the_first_the_default(fake, tmp_path) -> None:
    home = tmp_path / "home"
    env = fake.env(home)
    args = ["install", "--model", "bge,m=/models/bge", "--model", "qwen=/models/qwen", "--model", "/models/third"]
    assert launchd(env, *args, cwd=tmp_path).returncode == 0
    agents = home / "Library" / "LaunchAgents"
    names = ("worker", "worker-2", "worker-3", "api")
    assert fake.calls("launchctl bootstrap") == [
        f"launchctl bootstrap gui/{UID} {agents / f'com.rerank-server.{name}.plist'}" for name in names
    ]
    plists_ = {n: plistlib.loads((agents / f"com.rerank-server.{n}.plist").read_bytes()) for n in names}
    envs = {n: p["EnvironmentVariables"] for n, p in plists_.items()}
    assert [envs[n]["RERANK_MODEL"] for n in names[:3]] == ["/models/bge", "/models/qwen", "/models/third"]
    assert envs["worker"]["RERANK_SERVED_MODEL_NAME"] == "bge,m"
    assert envs["worker-2"]["RERANK_SERVED_MODEL_NAME"] == "qwen"
    assert "RERANK_SERVED_MODEL_NAME" not in envs["worker-3"]  # served as /models/third, as given
    assert {envs[n]["RERANK_DEFAULT_MODEL"] for n in names} == {"bge"}
    assert plists_["worker-2"]["ProgramArguments"][-1] == "worker" and plists_["worker-2"]["ExitTimeOut"] == 90

    fake.clear()  # installed again with one model: the other models' agents go
    assert launchd(env, "install", "--model", "/models/bge", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in agents.iterdir()) == ["com.rerank-server.api.plist", "com.rerank-server.worker.plist"]
    assert f"launchctl bootout gui/{UID}/com.rerank-server.worker-3" in fake.calls("launchctl bootout")
    fake.clear()
    assert launchd(env, "uninstall").returncode == 0
    assert not list(agents.iterdir())


def test_dry_run_prints_the_plists_and_changes_nothing(fake, tmp_path) -> None:
    result = launchd(fake.env(tmp_path), "install", "--dry-run", "--model", "/models/m")
    assert result.returncode == 0, result.stderr
    assert "<string>com.rerank-server.worker</string>" in result.stdout
    assert "<string>/models/m</string>" in result.stdout
    assert not (tmp_path / "Library").exists()
    assert fake.calls() == []


def test_status_reports_a_worker_that_cannot_start(fake, tmp_path) -> None:
    api_port = free_port()  # nothing listens there
    assert launchd(fake.env(tmp_path), "install", "--port", str(api_port)).returncode == 0
    result = launchd(fake.env(tmp_path, FAKE_LAST_EXIT="3"), "status")
    assert result.returncode == 1
    assert "com.rerank-server.worker: running, pid 4242, last exit code 3 (cannot start: see" in result.stdout
    assert f"http://127.0.0.1:{api_port}/health: no answer" in result.stdout
    assert "com.rerank-server.redis" not in result.stdout  # not installed


def test_uninstall_boots_out_and_deletes(fake, tmp_path) -> None:
    assert launchd(fake.env(tmp_path), "install").returncode == 0
    fake.clear()
    result = launchd(fake.env(tmp_path), "uninstall")
    assert result.returncode == 0, result.stderr
    assert fake.calls("launchctl bootout") == [
        f"launchctl bootout gui/{UID}/{LABELS['api']}",
        f"launchctl bootout gui/{UID}/{LABELS['worker']}",
    ]
    assert not fake.loaded()
    assert not list((tmp_path / "Library" / "LaunchAgents").iterdir())
    status = launchd(fake.env(tmp_path), "status")
    assert status.returncode == 1
    assert "no agents installed" in status.stdout


def test_without_launchctl_it_says_where_launchd_exists(fake, tmp_path) -> None:
    result = launchd(fake.env(tmp_path, tools=("tailscale", "socat")), "install")
    assert result.returncode == 1
    assert "launchctl not found: LaunchAgents exist only on macOS" in result.stderr


@pytest.mark.parametrize("service", ["redis", "worker", "api"])
def test_the_examples_in_launchd_folder_are_what_install_writes(service: str) -> None:
    """launchd/ shows users the plists; they must stay what the code generates for the example in the docs."""
    folder = Path(__file__).parents[2] / "launchd"
    url = "redis://:PASSWORD@127.0.0.1:6379/0"
    built = plists.build(
        Settings(redis_url=url),
        python="/Users/you/rerank-server/.venv/bin/python",
        workdir=Path("/Users/you/rerank-server"),
        layout=plists.Layout(Path("/Users/you")),
        extra_env={},
        redis_server="/opt/homebrew/bin/redis-server",
    )
    assert plistlib.loads((folder / f"{LABELS[service]}.plist").read_bytes()) == built[service]
    layout = plists.Layout(Path("/Users/you"))
    assert (folder / "redis.conf").read_text() == plists.redis_conf(url, layout.redis_dir(Settings(redis_url=url)))
