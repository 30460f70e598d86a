"""The job contract: the one place that says what travels through Redis.

The API, the worker and outside clients (a Docker container with only ``redis`` and ``rq``
installed) all agree on these names and shapes. This module imports neither torch nor the API,
so any of them can import it.

Every Queue, Worker and ``Job.fetch`` must use :data:`SERIALIZER` (JSON): pickle would let
anyone who can write to Redis run code on the worker.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: Dotted path of RQ's JSON serializer; pass it as ``serializer=`` everywhere.
SERIALIZER = "rq.serializers.JSONSerializer"

#: Interactive calls from the HTTP facade. Workers listen here first.
SYNC_QUEUE = "rerank"
#: Bulk work enqueued directly by clients; served only when the sync queue is empty.
BULK_QUEUE = "rerank-bulk"
#: Queue order is priority order: a worker always drains sync work before bulk work.
QUEUES = (SYNC_QUEUE, BULK_QUEUE)
#: A model's own queues are the ones above plus this and its canonical name (``rerank@my-model``): one Redis
#: serves several models and no job can reach a worker of another model. The default model's workers consume
#: :data:`QUEUES` first, so clients written for one model (``rerank-bulk``) keep working.
MODEL_QUEUE_SEPARATOR = "@"

#: Job function that scores one query against its candidates.
RERANK_JOB = "rerank_worker.jobs.rerank"
#: Job function that scores many items in chunks, reporting progress; enqueue it on :data:`BULK_QUEUE`.
BULK_JOB = "rerank_worker.jobs.rerank_bulk"
#: The worker refuses every job whose function is not listed here (RQ would import any name).
ALLOWED_JOB_FUNCTIONS = frozenset({RERANK_JOB, BULK_JOB})

#: ``job.meta[PROGRESS_META]`` of a running bulk job: ``{"done": pairs scored, "total": pairs}``.
PROGRESS_META = "progress"

#: Live-worker records: ``WORKER_KEY_PREFIX + name`` holds a :class:`WorkerInfo` JSON with a TTL,
#: and ``WORKERS_SET`` lists the names so readers need no SCAN.
WORKER_KEY_PREFIX = "rerank:worker:"
WORKERS_SET = "rerank:workers"
#: Known-model records: ``MODEL_KEY_PREFIX + canonical name`` holds a :class:`ModelRecord` JSON, rewritten by
#: every heartbeat of the model's workers with a TTL of ``defaults.KNOWN_MODEL_TTL_S``; ``MODELS_SET`` lists them.
#: A model known here with no live worker is answered 503 (it is coming back), an unknown name 404.
MODEL_KEY_PREFIX = "rerank:model:"
MODELS_SET = "rerank:models"


def model_queues(model: str | None = None) -> tuple[str, str]:
    """The (sync, bulk) queues of the model whose canonical name is ``model``; None: the default model's.

    Direct enqueue for a named model: ``Queue(bulk_queue("my-model"), ...)``; for the default model
    :data:`BULK_QUEUE` (``rerank-bulk``) keeps working.
    """
    if model is None:
        return QUEUES
    return (f"{SYNC_QUEUE}{MODEL_QUEUE_SEPARATOR}{model}", f"{BULK_QUEUE}{MODEL_QUEUE_SEPARATOR}{model}")


def sync_queue(model: str | None = None) -> str:
    """The sync queue of ``model`` (its canonical name); None: the default model's (:data:`SYNC_QUEUE`)."""
    return model_queues(model)[0]


def bulk_queue(model: str | None = None) -> str:
    """The bulk queue of ``model`` (its canonical name); None: the default model's (:data:`BULK_QUEUE`)."""
    return model_queues(model)[1]


def worker_queues(model: str, *, default: bool) -> list[str]:
    """What a worker of ``model`` consumes, in priority order: sync before bulk; the default model's workers take
    today's queue names first (where the API sends its requests) and their own names beside them."""
    sync, bulk = model_queues(model)
    return [SYNC_QUEUE, sync, BULK_QUEUE, bulk] if default else [sync, bulk]


#: What a served model name may hold: what model ids are made of, nothing that breaks a queue name or a list.
MODEL_NAME = re.compile(r"[A-Za-z0-9._/:@+-]{1,200}")


def served_names(value: str) -> list[str]:
    """The names of ``RERANK_SERVED_MODEL_NAME`` (comma-separated, the first canonical), or ValueError."""
    names = [name.strip() for name in value.split(",")]
    if not names or any(not MODEL_NAME.fullmatch(name) for name in names):
        raise ValueError(
            f"served model names must be comma-separated names of letters, digits and ._/:@+- (got {value!r})"
        )
    return list(dict.fromkeys(names))


def valid_unicode(value: Any) -> Any:
    """``value`` (a string, or JSON data holding strings) unchanged, or ValueError if it holds a lone surrogate.

    JSON can carry one (``"\\ud800"``) and Python decodes it, but it is not Unicode text: tokenizers refuse it
    and no UTF-8 answer can echo it, so it is rejected where it enters.
    """
    try:
        (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)).encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode: lone surrogate {exc.object[exc.start]!r}") from None
    return value


#: A string that is valid Unicode (see :func:`valid_unicode`).
UnicodeStr = Annotated[str, AfterValidator(valid_unicode)]


class ScoreMode(StrEnum):
    """How a score is reported: the model's own activation (sigmoid for one-label models) or raw logits."""

    ACTIVATED = "activated"
    RAW = "raw"


class TruncationSide(StrEnum):
    """Which end of a too-long candidate is cut: ``right`` keeps its start (the model's default)."""

    RIGHT = "right"
    LEFT = "left"


class RerankPayload(BaseModel):
    """The single argument of :data:`RERANK_JOB`: ``queue.enqueue(RERANK_JOB, payload.model_dump())``."""

    model_config = ConfigDict(extra="forbid")

    query: str
    candidates: list[str]
    score_mode: ScoreMode = ScoreMode.ACTIVATED
    truncate: bool = Field(
        True, description="Cut pairs longer than the model's max length; false fails the job with InputTooLong."
    )
    truncation_side: TruncationSide = TruncationSide.RIGHT
    max_tokens_per_doc: int | None = Field(None, ge=1, description="Cut each candidate to this many tokens first.")
    # Optional fields added later: older clients leave them out, and the API sends them only when set.
    instruction: str | None = Field(
        None,
        description="Task instruction, given to the model as sentence-transformers' prompt (a system message for "
        "chat-template models, a prefix of the query for others); None: the worker's RERANK_INSTRUCTION.",
    )
    max_chunks_per_doc: int | None = Field(
        None,
        ge=1,
        description="Split a candidate too long for the model into at most this many chunks that fit beside the "
        "query, and score it by its best chunk; None: cut it (truncation).",
    )


class InputTooLong(ValueError):
    """Raised by a job given ``truncate=False`` and a pair longer than the model takes.

    RQ stores only the traceback text, so the API recognises it by :meth:`find` and answers 413
    instead of a generic inference failure.
    """

    @classmethod
    def find(cls, exc_string: str) -> str | None:
        """This error's message if ``exc_string`` (RQ's stored traceback) ends with it, else None."""
        marker = f"{cls.__module__}.{cls.__qualname__}: "
        lines = [line for line in exc_string.splitlines() if line.strip()]
        if lines and lines[-1].startswith(marker):
            return lines[-1].removeprefix(marker)
        return None


class ScoredIndex(BaseModel):
    """One candidate's position in the request and its score."""

    index: int
    score: float


class RerankResult(BaseModel):
    """Return value of :data:`RERANK_JOB`; ``results`` are sorted by score, best first."""

    results: list[ScoredIndex]
    model: str
    device: str
    worker: str
    queue_ms: float = Field(description="Time the job waited in the queue before a worker took it.")
    inference_ms: float = Field(description="Time spent tokenizing and scoring on the worker.")
    # None in results of workers older than these fields.
    batch_jobs: int | None = Field(None, description="Jobs scored in the same model call as this one (1: alone).")
    batch_pairs: int | None = Field(None, description="(query, text) pairs in that model call, this job's included.")
    tokens: int | None = Field(None, description="Tokens this job put through the model: template and chunks included.")


class BulkItem(BaseModel):
    """One query and its candidates inside a bulk job; ``id`` is the client's own, echoed back."""

    model_config = ConfigDict(extra="forbid")

    id: UnicodeStr | None = None
    query: UnicodeStr
    candidates: list[UnicodeStr]


class BulkPayload(BaseModel):
    """The single argument of :data:`BULK_JOB`."""

    model_config = ConfigDict(extra="forbid")

    items: list[BulkItem]
    score_mode: ScoreMode = ScoreMode.ACTIVATED
    instruction: UnicodeStr | None = Field(None, description="As RerankPayload's, for every item.")
    max_chunks_per_doc: int | None = Field(None, ge=1, description="As RerankPayload's, for every item.")

    @property
    def pairs(self) -> int:
        return sum(len(item.candidates) for item in self.items)


class BulkItemResult(BaseModel):
    id: str | None
    results: list[ScoredIndex] = Field(description="Every candidate of the item, best first.")


class BulkResult(BaseModel):
    """Return value of :data:`BULK_JOB`: one entry per item, in input order."""

    items: list[BulkItemResult]
    model: str
    device: str
    worker: str
    pairs: int
    inference_ms: float
    tokens: int | None = Field(None, description="Tokens the job put through the model; None from older workers.")


class Progress(BaseModel):
    done: int
    total: int


class WorkerInfo(BaseModel):
    """What a live worker publishes about itself on every heartbeat."""

    name: str
    host: str
    pid: int
    model: str
    device: str
    dtype: str
    backend: str = Field("torch", description="What runs the model (RERANK_BACKEND); torch in older workers' records.")
    backend_file: str | None = Field(None, description="The exported file an onnx or openvino backend runs.")
    max_length: int
    batch_size: int | None = Field(None, description="Pairs per forward pass; None from older workers.")
    queues: list[str]
    started_at: float
    model_loads: int = Field(description="How often this process loaded the model: 1 means it stayed resident.")
    jobs_done: int
    jobs_failed: int
    # None in records of workers older than this field.
    reaper_swept_at: float | None = Field(
        None, description="Unix time of this worker's last successful reaper sweep; None before the first."
    )
    served_names: list[str] | None = Field(
        None, description="The names requests may give for this model, the canonical one (``model``) first."
    )
    source: str | None = Field(None, description="What the worker loaded: RERANK_MODEL, a hub id or a folder.")
    default: bool | None = Field(
        None, description="Whether this worker serves the default model, consuming today's queues too."
    )

    @property
    def names(self) -> list[str]:
        """Every name of this worker's model, the canonical one first (just ``model`` for older workers)."""
        return self.served_names or [self.model]


class ModelRecord(BaseModel):
    """A model's names, as its workers last published them: kept a day after the last worker stopped."""

    name: str = Field(description="The canonical name: what answers carry and the model's queues are named by.")
    served_names: list[str]
    last_seen: float


def worker_key(name: str) -> str:
    """Redis key of one worker's heartbeat record."""
    return WORKER_KEY_PREFIX + name


def model_key(name: str) -> str:
    """Redis key of one model's :class:`ModelRecord`."""
    return MODEL_KEY_PREFIX + name


def rank(scores: list[float]) -> list[ScoredIndex]:
    """Pair each score with its input index, best first; ties keep input order."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [ScoredIndex(index=i, score=scores[i]) for i in order]
