"""``rerank-server``'s entry point: settings parsed once, logging configured once, bad settings refused in one line."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from rerank_server import cli
from tests.conftest import CLI


@pytest.fixture(autouse=True)
def _only_given_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("RERANK_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env
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
    monkeypatch.setattr(rerank_server.up, "run", lambda settings: 0)
    monkeypatch.setenv("RERANK_LOG_LEVEL", "WARNING")
    assert cli.main(["up"]) == 0
    assert calls == ["WARNING"]
