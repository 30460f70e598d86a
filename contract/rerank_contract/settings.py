"""Settings for every process, read from ``RERANK_*`` environment variables (or a ``.env`` file).

Build one :class:`Settings` at the entry point and pass it down; nothing reads it at import time.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rerank_contract import defaults
from rerank_contract.jobs import served_names

#: The default model; its reason is in :mod:`rerank_contract.defaults`.
DEFAULT_MODEL = defaults.MODEL


class Settings(BaseSettings):
    """All knobs of the service; each field is ``RERANK_<FIELD>`` in the environment.

    Every default is ``defaults.<FIELD>``, where a comment says why it is that value.
    """

    model_config = SettingsConfigDict(env_prefix="RERANK_", env_file=".env", extra="ignore")

    # --- shared -------------------------------------------------------------------------------
    redis_url: str = Field(
        defaults.REDIS_URL,
        description="Redis holding the queues; redis://, rediss:// (TLS) and passwords in the URL work.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = defaults.LOG_LEVEL
    default_model: str | None = Field(
        defaults.DEFAULT_MODEL,
        description="The model that requests without `model` get (any of its served names), whose workers also "
        "consume the queues `rerank`/`rerank-bulk`. Unset: the only model served; give it to the API and every worker "
        "when several models are served.",
    )
    redis_dir: str = Field(
        defaults.REDIS_DIR,
        description="Where the Redis that `up` or `launchd --with-redis` starts keeps its append-only file.",
    )

    # --- worker / model runtime ----------------------------------------------------------------
    model: str = Field(defaults.MODEL, description="Hugging Face id or local folder of a CrossEncoder.")
    served_model_name: str | None = Field(
        defaults.SERVED_MODEL_NAME,
        description="Comma-separated names requests may give in `model` for this worker's model; the first is the "
        "canonical one answers carry. Default: RERANK_MODEL as given.",
    )
    device: str = Field(
        defaults.DEVICE, description="auto (mps, then cuda, then cpu), or a torch device: cpu, cuda:0, mps."
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        defaults.DTYPE, description="Model precision; auto: float16 on cuda and mps, float32 on cpu."
    )
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        defaults.BATCH_SIZE,
        description="Pairs per forward pass (micro-batch); auto: the size with the best rate, measured at start-up.",
    )
    max_batch_pairs: int = Field(
        defaults.MAX_BATCH_PAIRS,
        ge=1,
        description="Waiting jobs are scored together up to this many pairs; 1 turns batching off.",
    )
    max_length: int | None = Field(
        defaults.MAX_LENGTH,
        ge=8,
        description="Max tokens per (query, candidate) pair; longer pairs are truncated. Default: model's.",
    )
    bulk_chunk_pairs: int = Field(
        defaults.BULK_CHUNK_PAIRS,
        ge=1,
        description="Bulk jobs are scored this many pairs at a time; sync requests run in between.",
    )
    warmup: bool = Field(
        defaults.WARMUP, description="Run one forward pass at start-up so the first request is not slow."
    )
    heartbeat_interval_s: float = Field(
        defaults.HEARTBEAT_INTERVAL_S, gt=0, description="How often a worker says it is alive."
    )
    heartbeat_ttl_s: float = Field(
        defaults.HEARTBEAT_TTL_S, gt=0, description="A worker silent this long is taken for dead."
    )
    backend: Literal["torch", "onnx", "openvino"] = Field(
        defaults.BACKEND,
        description="What runs the model: torch, or (CPU) an exported onnx or openvino file, made on the first start.",
    )
    backend_variant: Literal["optimized", "int8"] = Field(
        defaults.BACKEND_VARIANT,
        description="onnx/openvino file: optimized (float32, torch's scores) or int8 (faster, scores move: "
        "see `rerank-server model export --quantize`).",
    )
    scorer: Literal["cross-encoder", "fake"] = Field(
        defaults.SCORER,
        description="cross-encoder: the model above; fake: a torch-free word-overlap scorer, to test the plumbing.",
    )
    instruction: str | None = Field(
        defaults.INSTRUCTION,
        description="Instruction for requests that send none (the model's prompt); default: the model's saved one.",
    )
    max_chunks_per_doc: int | None = Field(
        defaults.MAX_CHUNKS_PER_DOC,
        ge=1,
        description="Score a too-long document by its best of at most this many chunks (requests that do not say); "
        "default: cut it.",
    )
    bucket_padding: Literal["auto", "on", "off"] = Field(
        defaults.BUCKET_PADDING,
        description="Pad micro-batches to a few sequence lengths (bounded shapes, bounded MPS memory); auto: on mps.",
    )
    worker_max_jobs: int | None = Field(
        defaults.WORKER_MAX_JOBS, ge=1, description="A worker that has done this many jobs finishes and exits 0."
    )
    worker_max_memory_mb: int | None = Field(
        defaults.WORKER_MAX_MEMORY_MB,
        ge=1,
        description="A worker past this much memory (MiB) finishes its job and exits 0, for a fresh one.",
    )
    max_batch_s: float = Field(
        defaults.MAX_BATCH_S,
        gt=0,
        description="A batch holds at most the pairs the model scores in this long (at its recent rate), "
        "but at least one micro-batch.",
    )

    # --- API / facade ------------------------------------------------------------------------
    host: str = defaults.HOST
    port: int = Field(defaults.PORT, ge=0, le=65535)
    api_processes: int = Field(
        defaults.API_PROCESSES,
        ge=1,
        description="`rerank-server api` serves the port from this many processes, each with its own monitor.",
    )
    instance: str | None = Field(
        defaults.INSTANCE,
        description="The id `GET /health` reports as `instance`; `up` sets one per run so it announces only its "
        "own API. Default: a new id per API process.",
    )
    request_timeout_s: float = Field(
        defaults.REQUEST_TIMEOUT_S, gt=0, description="Longest wait for a result before a 504."
    )
    max_candidates: int = Field(defaults.MAX_CANDIDATES, ge=1, description="More candidates in one request -> 413.")
    max_request_chars: int = Field(
        defaults.MAX_REQUEST_CHARS, ge=1, description="More characters (query + candidates) in one request -> 413."
    )
    max_text_chars: int = Field(defaults.MAX_TEXT_CHARS, ge=1, description="A longer query or candidate -> 413.")
    max_body_bytes: int = Field(defaults.MAX_BODY_BYTES, ge=1024, description="A larger request body -> 413.")
    max_inflight: int = Field(
        defaults.MAX_INFLIGHT, ge=1, description="More sync requests waiting in one API process -> 429."
    )
    max_queue_depth: int = Field(
        defaults.MAX_QUEUE_DEPTH, ge=1, description="More sync jobs waiting in the queue -> 429."
    )
    result_ttl_s: int = Field(
        defaults.RESULT_TTL_S, ge=1, description="How long a sync job's result stays in Redis after it finishes."
    )
    bulk_max_pairs: int = Field(
        defaults.BULK_MAX_PAIRS, ge=1, description="More pairs in one bulk job submitted over HTTP -> 413."
    )
    bulk_result_ttl_s: int = Field(
        defaults.BULK_RESULT_TTL_S, ge=1, description="How long a finished bulk job and its result are kept."
    )
    bulk_failure_ttl_s: int = Field(
        defaults.BULK_FAILURE_TTL_S, ge=1, description="How long a failed or cancelled bulk job is kept."
    )
    bulk_job_timeout_s: int = Field(
        defaults.BULK_JOB_TIMEOUT_S, ge=1, description="A bulk job running longer than this is stopped."
    )
    bulk_retries: int = Field(
        defaults.BULK_RETRIES,
        ge=0,
        description="A bulk job whose worker died (or that failed) is run again up to this many times.",
    )
    api_key: SecretStr | None = Field(
        defaults.API_KEY, description="When set, every endpoint but /health needs `Authorization: Bearer <key>`."
    )

    @field_validator("served_model_name")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        if value is not None:
            served_names(value)  # ValueError names the problem
        return value

    def served_names(self, loaded: str) -> list[str]:
        """This worker's model names, the canonical first: RERANK_SERVED_MODEL_NAME, else ``loaded`` (the name the
        scorer gives what it loaded: RERANK_MODEL as given)."""
        return served_names(self.served_model_name) if self.served_model_name else [loaded]

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
