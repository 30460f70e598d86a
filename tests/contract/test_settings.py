"""Settings come from RERANK_* variables with documented defaults and are validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rerank_contract.settings import DEFAULT_MODEL, Settings, settings_env


def test_defaults() -> None:
    s = Settings()
    assert s.model == DEFAULT_MODEL == "BAAI/bge-reranker-v2-m3"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.host, s.port, s.device) == ("127.0.0.1", 8080, "auto")


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANK_MODEL", "/models/tiny")
    monkeypatch.setenv("RERANK_MAX_CANDIDATES", "7")
    monkeypatch.setenv("RERANK_MAX_LENGTH", "256")
    monkeypatch.setenv("RERANK_WARMUP", "false")
    s = Settings()
    assert (s.model, s.max_candidates, s.max_length, s.warmup) == ("/models/tiny", 7, 256, False)


def test_api_processes_default_to_one_and_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().api_processes == 1
    monkeypatch.setenv("RERANK_API_PROCESSES", "4")
    assert Settings().api_processes == 4


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RERANK_PORT", "70000"),
        ("RERANK_BATCH_SIZE", "0"),
        ("RERANK_REQUEST_TIMEOUT_S", "-1"),
        ("RERANK_LOG_LEVEL", "x"),
        ("RERANK_API_PROCESSES", "0"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_heartbeat_ttl_must_outlive_interval() -> None:
    with pytest.raises(ValidationError, match="heartbeat_ttl_s"):
        Settings(heartbeat_interval_s=2, heartbeat_ttl_s=1)


def test_api_key_is_secret_and_reaches_up_children_intact() -> None:
    from rerank_server.up import child_env

    s = Settings(api_key="s3cret-key")
    assert "s3cret-key" not in repr(s)
    assert child_env(s)["RERANK_API_KEY"] == "s3cret-key"
    assert "RERANK_API_KEY" not in child_env(Settings())


def test_settings_env_reads_back_to_the_same_settings() -> None:
    """The one settings-to-environment conversion: secrets in clear, bools as true/false, None left out."""
    given = Settings(api_key="s3cret-key", warmup=False, dtype="bfloat16", log_level="WARNING", port=9001)
    env = settings_env(given, only_set=False)
    assert env["RERANK_API_KEY"] == "s3cret-key"
    assert (env["RERANK_WARMUP"], env["RERANK_DTYPE"], env["RERANK_PORT"]) == ("false", "bfloat16", "9001")
    assert "RERANK_MAX_LENGTH" not in env
    unset = {f"RERANK_{name.upper()}" for name in Settings.model_fields if getattr(given, name) is None}
    assert "RERANK_MAX_LENGTH" in unset
    assert set(env) == {f"RERANK_{name.upper()}" for name in Settings.model_fields} - unset
    assert Settings(**{k.removeprefix("RERANK_").lower(): v for k, v in env.items()}) == given
    assert settings_env(given, only_set=True) == {
        "RERANK_API_KEY": "s3cret-key",
        "RERANK_DTYPE": "bfloat16",
        "RERANK_LOG_LEVEL": "WARNING",
        "RERANK_PORT": "9001",
        "RERANK_WARMUP": "false",
    }


def test_up_children_get_the_real_key_even_over_a_stale_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from rerank_server.up import child_env

    monkeypatch.setenv("RERANK_API_KEY", "stale")
    env = child_env(Settings(api_key="fresh-key"))
    assert env["RERANK_API_KEY"] == "fresh-key"
    assert "*" not in env["RERANK_API_KEY"]


def test_every_setting_default_is_in_defaults_with_a_reason() -> None:
    """rerank_contract/defaults.py is the one place for defaults: each field's default is defaults.<FIELD>."""
    from pathlib import Path

    from rerank_contract import defaults

    source = Path(defaults.__file__).read_text().splitlines()
    for name, field in Settings.model_fields.items():
        constant = name.upper()
        assert hasattr(defaults, constant), f"defaults.{constant} is missing"
        assert field.default == getattr(defaults, constant), name
        line = next(i for i, text in enumerate(source) if text.startswith((f"{constant} =", f"{constant}: Final =")))
        assert source[line - 1].startswith("#: "), f"defaults.{constant} has no comment saying why"
