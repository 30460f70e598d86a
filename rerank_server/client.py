"""A small Python client (no torch): sync reranking over HTTP, bulk jobs over HTTP or straight to Redis.

from rerank_server.client import HttpClient, QueueClient

api = HttpClient("http://127.0.0.1:8080")
api.rerank("machine learning", ["deep learning", "cooking recipes"])   # [ScoredIndex(index=0, ...), ...]
job_id = api.submit_bulk([{"id": "q1", "query": "...", "candidates": ["...", "..."]}], max_chunks_per_doc=4)
state = api.wait(job_id, on_progress=print)                          # JobState(status="finished", result=...)

queue = QueueClient("redis://127.0.0.1:6379/0")                       # same calls, no HTTP involved
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from rerank_contract import defaults
from rerank_contract.bulk_jobs import BulkJobs, JobState
from rerank_contract.jobs import BulkItem, BulkPayload, Progress, ScoredIndex, ScoreMode
from rerank_contract.redis_conn import connect
from rerank_contract.settings import Settings


class ClientError(Exception):
    """The server answered with an error: ``status`` and its ``{"error", "error_type"}`` body."""

    def __init__(self, status: int, error: str, error_type: str) -> None:
        super().__init__(f"{status} {error_type}: {error}")
        self.status = status
        self.error = error
        self.error_type = error_type


def _payload(
    items: Iterable[BulkItem | dict[str, Any]],
    score_mode: ScoreMode | str,
    *,
    instruction: str | None = None,
    max_chunks_per_doc: int | None = None,
) -> BulkPayload:
    """The job's payload, validated here (a ``ValidationError`` before anything is sent)."""
    return BulkPayload(
        items=[BulkItem.model_validate(i) for i in items],
        score_mode=ScoreMode(score_mode),
        instruction=instruction,
        max_chunks_per_doc=max_chunks_per_doc,
    )


def _options(instruction: str | None, max_chunks_per_doc: int | None) -> dict[str, Any]:
    """The optional fields that are set: unset ones are not sent, so older servers and workers read the request."""
    options = {"instruction": instruction, "max_chunks_per_doc": max_chunks_per_doc}
    return {k: v for k, v in options.items() if v is not None}


class _BulkClient(ABC):
    """The bulk-job calls both transports offer, and ``wait`` built on them."""

    @abstractmethod
    def submit_bulk(
        self,
        items: Iterable[BulkItem | dict[str, Any]],
        *,
        score_mode: ScoreMode | str = ScoreMode.ACTIVATED,
        instruction: str | None = None,
        max_chunks_per_doc: int | None = None,
    ) -> str:
        """Queue ``items`` as one bulk job and return its id. ``instruction`` and ``max_chunks_per_doc`` (chunk
        too-long candidates, score each by its best chunk) apply to every item; None: the worker's defaults."""

    @abstractmethod
    def job(self, job_id: str) -> JobState: ...

    @abstractmethod
    def cancel(self, job_id: str) -> JobState: ...

    def wait(
        self,
        job_id: str,
        *,
        poll_s: float = defaults.BULK_POLL_S,
        timeout_s: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> JobState:
        """Poll until the job is finished, failed or cancelled; ``on_progress`` sees each new progress."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last: Progress | None = None
        while True:
            state = self.job(job_id)
            if on_progress is not None and state.progress is not None and state.progress != last:
                last = state.progress
                on_progress(last)
            if state.done:
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {state.status} after {timeout_s}s")
            time.sleep(poll_s)


class HttpClient(_BulkClient):
    """The HTTP API: ``/v1/rerank`` and ``/v1/jobs``."""

    def __init__(
        self, base_url: str, *, api_key: str | None = None, timeout_s: float = defaults.CLIENT_TIMEOUT_S
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            try:
                body = response.json()
                raise ClientError(response.status_code, body["error"], body["error_type"])
            except (ValueError, KeyError, TypeError):
                raise ClientError(response.status_code, response.text, "http") from None
        return response.json()

    def rerank(
        self,
        query: str,
        candidates: list[str],
        *,
        instruction: str | None = None,
        max_chunks_per_doc: int | None = None,
        model: str | None = None,
    ) -> list[ScoredIndex]:
        """Every candidate's index and score, best first. ``instruction``, ``max_chunks_per_doc`` and ``model`` (a
        served model's name; None: the default model) are ``/v1/rerank``'s fields of those names, sent only when
        given; the API checks them (422, or 404 for an unknown model: ClientError)."""
        request = {"query": query, "candidates": candidates, **_options(instruction, max_chunks_per_doc)}
        if model is not None:
            request["model"] = model
        body = self._call("POST", "/v1/rerank", json=request)
        return [ScoredIndex.model_validate(r) for r in body["results"]]

    def submit_bulk(
        self,
        items: Iterable[BulkItem | dict[str, Any]],
        *,
        score_mode: ScoreMode | str = ScoreMode.ACTIVATED,
        instruction: str | None = None,
        max_chunks_per_doc: int | None = None,
        model: str | None = None,
    ) -> str:
        payload = _payload(items, score_mode, instruction=instruction, max_chunks_per_doc=max_chunks_per_doc)
        body = payload.model_dump(mode="json", exclude_none=True)
        return self._call("POST", "/v1/jobs", json=body | ({"model": model} if model is not None else {}))["id"]

    def job(self, job_id: str) -> JobState:
        return JobState.model_validate(self._call("GET", f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> JobState:
        return JobState.model_validate(self._call("DELETE", f"/v1/jobs/{job_id}"))

    def close(self) -> None:
        self._http.close()


class QueueClient(_BulkClient):
    """Bulk jobs straight on Redis, for machines that reach Redis but not the API."""

    def __init__(self, redis_url: str | None = None, *, settings: Settings | None = None) -> None:
        """``settings`` (default: from ``RERANK_*``) gives the Redis URL and the jobs' timeout and TTLs."""
        settings = settings or Settings()
        self._redis = connect(redis_url or settings.redis_url)
        self._jobs = BulkJobs.from_settings(self._redis, settings)

    def submit_bulk(
        self,
        items: Iterable[BulkItem | dict[str, Any]],
        *,
        score_mode: ScoreMode | str = ScoreMode.ACTIVATED,
        instruction: str | None = None,
        max_chunks_per_doc: int | None = None,
        model: str | None = None,
    ) -> str:
        """``model``: any name of a model a worker served in the last day (its queue is found from the workers'
        records; LookupError for an unknown one); None: the default model's queue, ``rerank-bulk``."""
        payload = _payload(items, score_mode, instruction=instruction, max_chunks_per_doc=max_chunks_per_doc)
        return self._jobs.submit(payload, self._jobs.model_queue(model))

    def job(self, job_id: str) -> JobState:
        return self._jobs.state(job_id)

    def cancel(self, job_id: str) -> JobState:
        return self._jobs.cancel(job_id)

    def close(self) -> None:
        self._redis.close()
