"""Settings for every process, read from ``RERANK_*`` environment variables (or a ``.env`` file).

Build one :class:`Settings` at the entry point and pass it down; nothing reads it at import time.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.json_schema import JsonDict
from pydantic_settings import BaseSettings, SettingsConfigDict

from rerank_contract import defaults
from rerank_contract.jobs import served_names

#: The default model; its reason is in :mod:`rerank_contract.defaults`.
DEFAULT_MODEL = defaults.MODEL


def _doc(used_by: str, *, shown: str | None = None, see: tuple[str, str] | None = None) -> JsonDict:
    """A field's entry in the docs' settings table (docs/hooks/settings_table.py renders it from here).

    ``used_by``: the processes that read it; ``shown``: how to show a ``None`` default in words; ``see``: a docs
    page (title, path under docs/) that says more.
    """
    extra: JsonDict = {"used_by": used_by}
    if shown is not None:
        extra["default_shown"] = shown
    if see is not None:
        extra["see_title"], extra["see_page"] = see
    return extra


class Settings(BaseSettings):
    """All knobs of the service; each field is ``RERANK_<FIELD>`` in the environment.

    Every default is ``defaults.<FIELD>``, where a comment says why it is that value.
    """

    model_config = SettingsConfigDict(env_prefix="RERANK_", env_file=".env", extra="ignore")

    # --- shared -------------------------------------------------------------------------------
    redis_url: str = Field(
        defaults.REDIS_URL,
        description="Redis holding the queues. `redis://:password@host:6379/0` works, and TLS: "
        "`rediss://:password@host:6380/0?ssl_ca_certs=/etc/ssl/redis-ca.crt` (the CA that signed the server's "
        "certificate; tested against a TLS-only redis-server in `tests/e2e/test_tls.py`).",
        json_schema_extra=_doc("all"),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        defaults.LOG_LEVEL, description="`DEBUG`, `INFO`, `WARNING` or `ERROR`.", json_schema_extra=_doc("all")
    )
    default_model: str | None = Field(
        defaults.DEFAULT_MODEL,
        description="The model (any of its names) that requests without `model` get, and whose workers also consume "
        "the queues `rerank`/`rerank-bulk`. Unset: a worker takes those queues, and the API's default is the model "
        "whose workers do (the only model, in a one-model deployment). Give it to the API and every worker when "
        "several models are served; `up` does.",
        json_schema_extra=_doc("api, worker, up", see=("Several models", "models.md")),
    )
    redis_dir: str = Field(
        defaults.REDIS_DIR,
        description="Where the Redis that `rerank-server up` starts (or `launchd install --with-redis` installs) "
        "keeps its append-only file.",
        json_schema_extra=_doc("up, launchd", see=("Reliability", "reliability.md")),
    )

    # --- worker / model runtime ----------------------------------------------------------------
    model: str = Field(
        defaults.MODEL,
        description="Hugging Face id or local folder of a sentence-transformers CrossEncoder (one score per pair).",
        json_schema_extra=_doc("worker"),
    )
    served_model_name: str | None = Field(
        defaults.SERVED_MODEL_NAME,
        description="Comma-separated names requests may give in `model` for this worker's model (letters, digits, "
        "`._/:@+-`); the first is the canonical one answers carry and the model's queues are named by, the others "
        "are aliases.",
        json_schema_extra=_doc("worker", shown="`RERANK_MODEL` as given", see=("Several models", "models.md")),
    )
    device: str = Field(
        defaults.DEVICE,
        description="`auto` picks mps, then cuda, then cpu; or name one: `cpu`, `cuda`, `cuda:1`, `mps`.",
        json_schema_extra=_doc("worker"),
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        defaults.DTYPE,
        description="Model precision: `auto` (float16 on cuda and mps, float32 on cpu), `float32`, `float16`, "
        "`bfloat16`.",
        json_schema_extra=_doc("worker"),
    )
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        defaults.BATCH_SIZE,
        description="Pairs per forward pass (micro-batch). `auto`: at start-up the worker times the model on typical "
        "pairs (a short query, passages of 40-120 words) at 8, 16, 32, ... up to 256 and keeps the smallest size "
        "within 3% of the best rate; it stops once the rate has passed its peak or one size took 3 s, so a large "
        "model on a slow CPU adds a few seconds to the start. The log and `/health` (`workers[].batch_size`) show "
        "the choice, e.g. `micro-batch 16 (pairs/s by size: 8: 52, 16: 58, 32: 50, 64: 39)`. A number skips the "
        "measurement. On a CPU a call of 64 pairs or more is cut into at least four micro-batches (of at least 16), "
        "since a call's pairs are sorted by length and more micro-batches pad less.",
        json_schema_extra=_doc("worker"),
    )
    max_batch_pairs: int = Field(
        defaults.MAX_BATCH_PAIRS,
        ge=1,
        description="Jobs waiting in the queue are scored together, up to this many pairs per model call; `1` turns "
        "cross-request batching off.",
        json_schema_extra=_doc("worker"),
    )
    max_length: int | None = Field(
        defaults.MAX_LENGTH,
        ge=8,
        description="Max tokens per (query, candidate) pair as the model reads it (template included); longer pairs "
        "are truncated. Set it to serve more than 8192 of a model that takes more (Qwen3-Reranker: 40,960).",
        json_schema_extra=_doc("worker", shown="model's own, at most 8192"),
    )
    bulk_chunk_pairs: int = Field(
        defaults.BULK_CHUNK_PAIRS,
        ge=1,
        description="Bulk jobs are scored this many pairs at a time; sync requests run between chunks.",
        json_schema_extra=_doc("worker", see=("Bulk jobs", "bulk.md")),
    )
    warmup: bool = Field(
        defaults.WARMUP,
        description="One forward pass at start-up so the first request is not slow.",
        json_schema_extra=_doc("worker"),
    )
    heartbeat_interval_s: float = Field(
        defaults.HEARTBEAT_INTERVAL_S,
        gt=0,
        description="How often a worker writes its liveness record.",
        json_schema_extra=_doc("worker"),
    )
    heartbeat_ttl_s: float = Field(
        defaults.HEARTBEAT_TTL_S,
        gt=0,
        description="A worker silent this long counts as dead (must exceed the interval).",
        json_schema_extra=_doc("worker"),
    )
    backend: Literal["torch", "onnx", "openvino"] = Field(
        defaults.BACKEND,
        description="What runs the model's forward pass: `torch`; or, on a CPU, `onnx` (ONNX Runtime) or `openvino`, "
        "which run a file exported from the model on the first start (needs the extra of the same name). "
        "Tokenizing, instructions, truncation, chunking, activation, batching and bulk jobs are the same on every "
        "backend.",
        json_schema_extra=_doc("worker", see=("CPU runtimes", "cpu-runtimes.md")),
    )
    backend_variant: Literal["optimized", "int8"] = Field(
        defaults.BACKEND_VARIANT,
        description="Which exported file `onnx`/`openvino` run: `optimized` (float32 with fused attention: torch's "
        "scores within 1e-6) or `int8` (onnx only: dynamic int8, faster, scores move; read "
        "`rerank-server model export --quantize int8`'s report before choosing it).",
        json_schema_extra=_doc("worker", see=("CPU runtimes", "cpu-runtimes.md")),
    )
    scorer: Literal["cross-encoder", "fake"] = Field(
        defaults.SCORER,
        description="`cross-encoder`: the model above; `fake`: a torch-free word-overlap scorer (no model, no torch) "
        "to try or test the queue, batching and bulk plumbing, e.g. `RERANK_SCORER=fake rerank-server up`.",
        json_schema_extra=_doc("worker"),
    )
    instruction: str | None = Field(
        defaults.INSTRUCTION,
        description="Instruction for requests that send none, given to the model as sentence-transformers' prompt.",
        json_schema_extra=_doc(
            "worker", shown="model's saved prompt (none)", see=("Instructions", "api.md#instructions")
        ),
    )
    max_chunks_per_doc: int | None = Field(
        defaults.MAX_CHUNKS_PER_DOC,
        ge=1,
        description="Score a document too long for the model by its best of at most this many chunks, for requests "
        "that do not say.",
        json_schema_extra=_doc("worker", shown="unset (cut)", see=("Long documents", "api.md#long-documents-chunked")),
    )
    bucket_padding: Literal["auto", "on", "off"] = Field(
        defaults.BUCKET_PADDING,
        description="`on`: pad every micro-batch to one of a few sequence lengths (16, 24, 32, 48, ... up to the "
        "model's limit), so the set of input shapes stays small; `auto`: on for mps, where PyTorch keeps memory per "
        "shape for good; `off`. Scores do not change.",
        json_schema_extra=_doc("worker", see=("Reliability", "reliability.md#memory-over-months")),
    )
    worker_max_jobs: int | None = Field(
        defaults.WORKER_MAX_JOBS,
        ge=1,
        description="A worker that has done this many jobs finishes the job in hand and exits with code 0; its "
        "supervisor starts a fresh one.",
        json_schema_extra=_doc("worker", see=("Reliability", "reliability.md#memory-over-months")),
    )
    worker_max_memory_mb: int | None = Field(
        defaults.WORKER_MAX_MEMORY_MB,
        ge=1,
        description="The same once the worker's memory passes this many MiB (resident memory; on mps, at least what "
        "the Metal driver holds).",
        json_schema_extra=_doc("worker", see=("Reliability", "reliability.md#memory-over-months")),
    )
    max_batch_s: float = Field(
        defaults.MAX_BATCH_S,
        gt=0,
        description="A batch also holds no more pairs than the model scores in this many seconds at the rate it "
        "showed on recent batches (never less than one micro-batch, `RERANK_BATCH_SIZE`), so on a slow CPU answers "
        "do not wait for a 10-second call; on a GPU `RERANK_MAX_BATCH_PAIRS` is what binds. A smaller batch sorts "
        "fewer pairs by length, so its micro-batches would carry more padding; on a CPU the worker therefore cuts a "
        "call of 64 pairs or more into at least four micro-batches (MiniLM-L6 on 2 cores, micro-batch 64, "
        "concurrency 32: 99.5 pairs/s before that rule, 120.1 with it, 120.8 with no time bound at all).",
        json_schema_extra=_doc("worker", see=("Benchmarks", "benchmarks.md")),
    )

    # --- API / facade ------------------------------------------------------------------------
    host: str = Field(
        defaults.HOST,
        description="Address the API listens on (`0.0.0.0` for every interface).",
        json_schema_extra=_doc("api, up"),
    )
    port: int = Field(
        defaults.PORT, ge=0, le=65535, description="Port the API listens on.", json_schema_extra=_doc("api, up")
    )
    api_processes: int = Field(
        defaults.API_PROCESSES,
        ge=1,
        description="API processes serving the port, for hosts with more than 2 cores; each has its own Redis "
        "connections and worker monitor, and `/metrics` sums them.",
        json_schema_extra=_doc("api, up", see=("Several API processes", "running.md#several-api-processes")),
    )
    instance: str | None = Field(
        defaults.INSTANCE,
        description="The id `GET /health` reports as `instance`. `rerank-server up` gives its API one per run, so it "
        "announces only its own API, never another service that answers on the port.",
        json_schema_extra=_doc("api", shown="a new id per API process"),
    )
    request_timeout_s: float = Field(
        defaults.REQUEST_TIMEOUT_S,
        gt=0,
        description="Longest wait for a result before `504`; also the job's queue TTL and run timeout.",
        json_schema_extra=_doc("api"),
    )
    max_candidates: int = Field(
        defaults.MAX_CANDIDATES,
        ge=1,
        description="More texts (candidates, documents) in one request answer `413`; TEI `/info` reports it as "
        "`max_client_batch_size`.",
        json_schema_extra=_doc("api"),
    )
    max_request_chars: int = Field(
        defaults.MAX_REQUEST_CHARS,
        ge=1,
        description="More characters (query + candidates) in one request answer `413`.",
        json_schema_extra=_doc("api"),
    )
    max_text_chars: int = Field(
        defaults.MAX_TEXT_CHARS,
        ge=1,
        description="A longer query or text answers `413`.",
        json_schema_extra=_doc("api"),
    )
    max_body_bytes: int = Field(
        defaults.MAX_BODY_BYTES,
        ge=1024,
        description="A larger request body (32 MiB) answers `413`, checked as it arrives.",
        json_schema_extra=_doc("api"),
    )
    max_inflight: int = Field(
        defaults.MAX_INFLIGHT,
        ge=1,
        description="More sync requests waiting in one API process answer `429` with `Retry-After`.",
        json_schema_extra=_doc("api"),
    )
    max_queue_depth: int = Field(
        defaults.MAX_QUEUE_DEPTH,
        ge=1,
        description="More sync jobs waiting in the model's queue answer `429` with `Retry-After` (each model has "
        "its own queue).",
        json_schema_extra=_doc("api"),
    )
    result_ttl_s: int = Field(
        defaults.RESULT_TTL_S,
        ge=1,
        description="How long a finished sync job's result stays in Redis.",
        json_schema_extra=_doc("api"),
    )
    bulk_max_pairs: int = Field(
        defaults.BULK_MAX_PAIRS,
        ge=1,
        description="More pairs in one bulk job submitted over HTTP answer `413`.",
        json_schema_extra=_doc("api", see=("Bulk jobs", "bulk.md")),
    )
    bulk_result_ttl_s: int = Field(
        defaults.BULK_RESULT_TTL_S,
        ge=1,
        description="How long a finished bulk job and its result are kept (a week).",
        json_schema_extra=_doc("api, client"),
    )
    bulk_failure_ttl_s: int = Field(
        defaults.BULK_FAILURE_TTL_S,
        ge=1,
        description="How long a failed or cancelled bulk job is kept.",
        json_schema_extra=_doc("api, client"),
    )
    bulk_job_timeout_s: int = Field(
        defaults.BULK_JOB_TIMEOUT_S,
        ge=1,
        description="A bulk job running longer than this is stopped.",
        json_schema_extra=_doc("api, client"),
    )
    bulk_retries: int = Field(
        defaults.BULK_RETRIES,
        ge=0,
        description="A bulk job whose worker died (or that failed) runs again up to this many times.",
        json_schema_extra=_doc("api, client"),
    )
    api_key: SecretStr | None = Field(
        defaults.API_KEY,
        description="When set, every endpoint but `/health`, `/docs`, `/redoc`, `/openapi.json` and the page at `/` "
        "needs `Authorization: Bearer <key>` (the page asks for it).",
        json_schema_extra=_doc("api", see=("Security", "security.md")),
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
