"""Settings for every process, read from ``RERANK_*`` environment variables (or a ``.env`` file).

Build one :class:`Settings` at the entry point and pass it down; nothing reads it at import time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "BAAI/bge-reranker-v2-m3"


class Settings(BaseSettings):
    """All knobs of the service; each field is ``RERANK_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RERANK_", env_file=".env", extra="ignore")

    # --- shared -------------------------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis holding the queues; redis://, rediss:// (TLS) and passwords in the URL work.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- worker / model runtime ----------------------------------------------------------------
    model: str = Field(DEFAULT_MODEL, description="Hugging Face id or local folder of a CrossEncoder.")
    device: str = Field("auto", description="auto (mps, then cuda, then cpu), or a torch device: cpu, cuda:0, mps.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Model precision; auto: float16 on cuda and mps, float32 on cpu."
    )
    batch_size: int = Field(32, ge=1, description="Pairs per forward pass (micro-batch).")
    max_batch_pairs: int = Field(
        512, ge=1, description="Waiting jobs are scored together up to this many pairs; 1 turns batching off."
    )
    max_length: int | None = Field(
        None, ge=8, description="Max tokens per (query, candidate) pair; longer pairs are truncated. Default: model's."
    )
    bulk_chunk_pairs: int = Field(
        256, ge=1, description="Bulk jobs are scored this many pairs at a time; sync requests run in between."
    )
    warmup: bool = Field(True, description="Run one forward pass at start-up so the first request is not slow.")
    heartbeat_interval_s: float = Field(1.0, gt=0, description="How often a worker says it is alive.")
    heartbeat_ttl_s: float = Field(3.0, gt=0, description="A worker silent this long is taken for dead.")

    # --- API / facade ------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    request_timeout_s: float = Field(30.0, gt=0, description="Longest wait for a result before a 504.")
    max_candidates: int = Field(1000, ge=1, description="More candidates in one request -> 413.")
    max_request_chars: int = Field(
        2_000_000, ge=1, description="More characters (query + candidates) in one request -> 413."
    )
    max_text_chars: int = Field(100_000, ge=1, description="A longer query or candidate -> 413.")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="A larger request body -> 413.")
    max_inflight: int = Field(512, ge=1, description="More sync requests waiting in one API process -> 429.")
    max_queue_depth: int = Field(2048, ge=1, description="More sync jobs waiting in the queue -> 429.")
    result_ttl_s: int = Field(60, ge=1, description="How long a sync job's result stays in Redis after it finishes.")
    bulk_max_pairs: int = Field(1_000_000, ge=1, description="More pairs in one bulk job submitted over HTTP -> 413.")
    bulk_result_ttl_s: int = Field(7 * 86400, ge=1, description="How long a finished bulk job and its result are kept.")
    bulk_failure_ttl_s: int = Field(7 * 86400, ge=1, description="How long a failed or cancelled bulk job is kept.")
    bulk_job_timeout_s: int = Field(86400, ge=1, description="A bulk job running longer than this is stopped.")
    bulk_retries: int = Field(
        3, ge=0, description="A bulk job whose worker died (or that failed) is run again up to this many times."
    )
    api_key: SecretStr | None = Field(
        None, description="When set, every endpoint but /health needs `Authorization: Bearer <key>`."
    )

    @model_validator(mode="after")
    def _heartbeat_outlives_interval(self) -> Settings:
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_ttl_s must be longer than heartbeat_interval_s")
        return self


def settings_env(settings: Settings, *, only_set: bool) -> dict[str, str]:
    """``settings`` as the ``RERANK_*`` variables that :class:`Settings` reads back to the same values.

    The one conversion for child processes (``up``), LaunchAgents and unit files. Secrets are written
    in clear, never as their mask: whoever starts a process with these needs the real key (the file or
    environment that holds them must be private). An unset (``None``) field is left out; booleans
    are ``true``/``false``; everything else, Literal choices included, is ``str(value)``.

    ``only_set``: only the fields that were given (flags, environment, ``.env``), so that a service
    installed today keeps following the code's defaults; otherwise every field.
    """
    prefix = type(settings).model_config.get("env_prefix", "")
    names = settings.model_fields_set if only_set else type(settings).model_fields
    env = {}
    for name in sorted(names):
        value = getattr(settings, name)
        if value is not None:
            env[f"{prefix}{name}".upper()] = _env_value(name, value)
    return env


def _env_value(name: str, value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()  # str() would give "**********"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TypeError(f"setting {name} has a {type(value).__name__}, which has no environment form")
