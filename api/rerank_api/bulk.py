"""Bulk jobs over HTTP, for clients that do not speak RQ: submit (202), poll, cancel.

The job is the same RQ job a Python client enqueues directly on the bulk queue (see the README);
:class:`rerank_contract.bulk_jobs.BulkJobs` does the RQ work, on a thread, and this module maps it
to HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from rerank_api.errors import ApiError, ErrorType, responses
from rerank_api.formats.common import Instruction, MaxChunks
from rerank_api.limits import check_texts
from rerank_contract.bulk_jobs import AlreadyDone, BulkJobs, JobState, Status, UnknownJob
from rerank_contract.jobs import BULK_QUEUE, BulkItem, BulkPayload, ScoreMode

T = TypeVar("T")


class BulkJobRequest(BaseModel):
    """Many queries, each with its candidates, scored in the background."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"id": "q1", "query": "machine learning", "candidates": ["deep learning", "cooking recipes"]},
                        {"id": "q2", "query": "astronomy", "candidates": ["black holes", "pasta sauce"]},
                    ]
                }
            ]
        },
    )

    items: list[BulkItem]
    model: str | None = Field(
        None,
        description="The served model (any of its names, see GET /v1/models); default: the default model. A model "
        "known but with no live worker is accepted: the job waits for one.",
    )
    score_mode: ScoreMode = Field(ScoreMode.ACTIVATED, description="`raw` for logits instead of activated scores.")
    instruction: Instruction = None
    max_chunks_per_doc: MaxChunks = None


class BulkJobAccepted(BaseModel):
    id: str
    status: Status
    status_url: str


async def _call(func: Callable[..., T], *args: object) -> T:
    """Run a blocking RQ call on a thread and translate its errors into the API's."""
    try:
        return await asyncio.to_thread(func, *args)
    except UnknownJob as exc:
        raise ApiError(ErrorType.NOT_FOUND, f"no bulk job {exc.args[0]!r}: unknown id, or its results expired") from exc
    except AlreadyDone as exc:
        raise ApiError(ErrorType.CONFLICT, str(exc)) from exc
    except (RedisError, OSError) as exc:
        raise ApiError(ErrorType.QUEUE_UNAVAILABLE, f"Redis unreachable: {exc}") from exc


async def _queue(request: Request, requested: str | None) -> str:
    """The bulk queue of the model ``requested`` names (None: the default), known live or in the last day; the
    default queue ``rerank-bulk`` when no model is known yet. 404 for an unknown name."""
    dispatcher = request.app.state.dispatcher
    model = dispatcher.models().find(requested)
    if model is None and requested is not None:
        with contextlib.suppress(ApiError):
            await dispatcher.route(requested)  # reads Redis again: a worker that has just started is found
        model = dispatcher.models().find(requested)
        if model is None and dispatcher.models().all:
            served = dispatcher.models().served()
            raise ApiError(ErrorType.MODEL_NOT_FOUND, f"model {requested!r} is not served; {served}")
    return BULK_QUEUE if model is None else model.bulk_queue


async def _bulk_jobs(request: Request) -> BulkJobs:
    return request.app.state.bulk_jobs


BulkJobsDep = Annotated[BulkJobs, Depends(_bulk_jobs)]
router = APIRouter(prefix="/v1/jobs", tags=["bulk jobs"])


@router.post(
    "",
    status_code=202,
    response_model=BulkJobAccepted,
    summary="Submit a bulk reranking job",
    responses=responses(
        ErrorType.VALIDATION, ErrorType.MODEL_NOT_FOUND, ErrorType.TOO_LARGE, ErrorType.QUEUE_UNAVAILABLE
    ),
)
async def submit(body: BulkJobRequest, request: Request, response: Response, bulk_jobs: BulkJobsDep):
    """Queue the items and answer at once with the job's id; poll ``status_url`` for progress and results.
    Accepted even while no worker runs: the job waits in Redis."""
    payload = BulkPayload(**body.model_dump(exclude_unset=True, exclude={"model"}))
    texts = (text for item in payload.items for text in (item.query, *item.candidates))
    check_texts([*texts, payload.instruction or ""], request.app.state.settings)
    limit = request.app.state.settings.bulk_max_pairs
    if payload.pairs > limit:
        raise ApiError(
            ErrorType.TOO_LARGE, f"{payload.pairs} pairs given, at most {limit} per job allowed (RERANK_BULK_MAX_PAIRS)"
        )
    job_id = await _call(bulk_jobs.submit, payload, await _queue(request, body.model))
    status_url = request.app.url_path_for("job_state", job_id=job_id)
    response.headers["Location"] = status_url
    return BulkJobAccepted(id=job_id, status="queued", status_url=status_url)


@router.get(
    "/{job_id}",
    name="job_state",
    response_model=JobState,
    summary="Status, progress and (once finished) results of a bulk job",
    responses=responses(ErrorType.NOT_FOUND, ErrorType.QUEUE_UNAVAILABLE),
)
async def state(job_id: str, bulk_jobs: BulkJobsDep):
    return await _call(bulk_jobs.state, job_id)


@router.delete(
    "/{job_id}",
    response_model=JobState,
    summary="Cancel a queued or running bulk job",
    responses=responses(ErrorType.NOT_FOUND, ErrorType.CONFLICT, ErrorType.QUEUE_UNAVAILABLE),
)
async def cancel(job_id: str, bulk_jobs: BulkJobsDep):
    """A queued job is removed from the queue; a running one stops after its current chunk."""
    return await _call(bulk_jobs.cancel, job_id)
