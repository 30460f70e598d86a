"""``rerank-server``'s entry point: settings parsed once, logging configured once, bad settings refused in one line."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from rerank_server import cli
from tests.support.services import CLI


@pytest.fixture(autouse=True)
def _only_given_settings(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # restored after the test


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANK_")}
    return {**env, **{f"RERANK_{k}": v for k, v in settings.items()}}


@pytest.mark.parametrize(
    ("command", "name", "value", "says"),
    [
        ("worker", "PORT", "70000", "RERANK_PORT=70000: Input should be less than or equal to 65535"),
        (
            "api",
            "BATCH_SIZE",
            "0",
            "RERANK_BATCH_SIZE=0: Input should be greater than or equal to 1 or input should be 'auto'",
        ),
        ("up", "LOG_LEVEL", "LOUD", "RERANK_LOG_LEVEL=LOUD: Input should be"),
        ("launchd", "WARMUP", "maybe", "RERANK_WARMUP=maybe: Input should be a valid boolean"),
    ],
)
def test_an_invalid_setting_is_one_line_and_exit_code_2(command, name, value, says, tmp_path) -> None:
    args = [command, "status"] if command == "launchd" else [command]
    result = subprocess.run([*CLI, *args], env=_env(**{name: value}), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"rerank-server {command}: invalid settings: ")
    assert says in lines[0]


def test_a_check_across_fields_is_one_line_without_the_other_values(monkeypatch, capsys) -> None:
    monkeypatch.setenv("RERANK_HEARTBEAT_TTL_S", "0.5")
    assert cli.main(["api", "--redis-url", "redis://:hunter2@127.0.0.1:6390/0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rerank-server api: invalid settings: heartbeat_ttl_s must be longer than")
    assert "hunter2" not in err


def test_log_level_flag_reaches_the_apps_loggers_and_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import rerank_api.app

    seen: dict[str, object] = {}
    monkeypatch.setattr(rerank_api.app, "create_app", lambda settings: seen.setdefault("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    assert cli.main(["api", "--log-level", "DEBUG", "--port", "9123"]) == 0
    assert seen["log_level"] == "debug" and seen["port"] == 9123
    assert logging.getLogger("rerank_api.dispatch").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("rerank_server.up").isEnabledFor(logging.DEBUG)


def test_logging_is_configured_once_for_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each subcommand runs with logging already set up by main, at the settings' level."""
    import rerank_server.up

    calls: list[str] = []
    monkeypatch.setattr(cli, "configure_logging", calls.append)
    monkeypatch.setattr(rerank_server.up, "run", lambda settings, models: 0)
    monkeypatch.setenv("RERANK_LOG_LEVEL", "WARNING")
    assert cli.main(["up"]) == 0
    assert calls == ["WARNING"]


def test_one_api_process_serves_its_own_app_with_metrics_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default: uvicorn gets the app object itself, and a stray PROMETHEUS_MULTIPROC_DIR is not followed."""
    import uvicorn

    import rerank_api.app

    seen: dict[str, object] = {}

    def run(app: object, **kwargs: object) -> None:
        seen.update(kwargs, app=app, multiproc=os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/somewhere/else")
    monkeypatch.setattr(rerank_api.app, "create_app", lambda settings: ("app for", settings.port))
    monkeypatch.setattr(uvicorn, "run", run)
    assert cli.main(["api", "--port", "9123"]) == 0
    assert seen["app"] == ("app for", 9123) and "workers" not in seen
    assert seen["multiproc"] is None
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == "/somewhere/else"  # restored after


def test_api_processes_run_uvicorn_workers_with_the_flags_in_their_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each uvicorn child builds `rerank_server:app` from the environment: the flags must be there, with a fresh
    metrics folder, and both are gone again once uvicorn returns."""
    import uvicorn

    from rerank_contract.settings import Settings

    seen: dict[str, object] = {}

    def run(app: object, **kwargs: object) -> None:
        folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert folder.is_dir() and not any(folder.iterdir())
        seen.update(kwargs, app=app, folder=folder, child=Settings())  # what a child reads

    deprecated = "prometheus_multiproc_dir"
    monkeypatch.setenv(deprecated, "/stale")  # a child would follow the deprecated spelling too
    monkeypatch.setattr(uvicorn, "run", run)
    argv = ["api", "--api-processes", "3", "--port", "9124", "--redis-url", "redis://10.0.0.9:6390/2"]
    assert cli.main(argv) == 0
    assert seen["app"] == "rerank_server:app" and seen["workers"] == 3 and seen["port"] == 9124
    child = seen["child"]
    assert isinstance(child, Settings)
    assert (child.redis_url, child.port, child.api_processes) == ("redis://10.0.0.9:6390/2", 9124, 3)
    assert not Path(str(seen["folder"])).exists()  # removed at exit
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ and "RERANK_REDIS_URL" not in os.environ
    assert os.environ[deprecated] == "/stale"


def test_the_metrics_folder_is_removed_when_uvicorn_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    folders: list[Path] = []

    def run(app: object, **kwargs: object) -> None:
        folders.append(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
        (folders[0] / "counter_1.db").write_bytes(b"")
        raise OSError("address already in use")

    monkeypatch.setattr(uvicorn, "run", run)
    with pytest.raises(OSError, match="address already in use"):
        cli.main(["api", "--api-processes", "2"])
    assert folders and not folders[0].exists()


@pytest.mark.parametrize("command", ["up", "launchd"])
def test_api_processes_flag_reaches_up_and_launchd_and_their_children(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rerank_server.up
    from rerank_server.deploy import launchd

    given: list[object] = []
    monkeypatch.setattr(rerank_server.up, "run", lambda settings, models: given.append(settings))
    monkeypatch.setattr(launchd, "_run", lambda args, settings: given.append(settings))
    args = ["launchd", "install"] if command == "launchd" else ["up"]
    cli.main([*args, "--api-processes", "2"])
    (settings,) = given
    assert settings.api_processes == 2  # type: ignore[attr-defined]
    assert rerank_server.up.child_env(settings)["RERANK_API_PROCESSES"] == "2"  # type: ignore[arg-type]


def test_the_api_processes_setting_is_refused_below_one() -> None:
    result = subprocess.run([*CLI, "api", "--api-processes", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "RERANK_API_PROCESSES=0: Input should be greater than or equal to 1" in result.stderr


def test_metrics_folders_of_killed_apis_are_removed_and_live_ones_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tempfile

    import uvicorn

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    done = subprocess.Popen(["true"])
    done.wait()
    dead, alive = tmp_path / f"rerank-api-metrics-{done.pid}-abc", tmp_path / f"rerank-api-metrics-{os.getpid()}-def"
    for folder in (dead, alive):
        folder.mkdir()
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    assert cli.main(["api", "--api-processes", "2"]) == 0
    assert not dead.exists() and alive.exists()
