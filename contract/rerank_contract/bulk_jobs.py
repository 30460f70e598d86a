"""Bulk jobs on the queue: submit, look up, cancel, with RQ's own API and nothing else.

Shared by the HTTP facade (``/v1/jobs``) and the Python client's direct-to-Redis mode, so both
report a job the same way. Torch-free.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal, cast

from pydantic import BaseModel, Field
from redis import Redis
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from rerank_contract.jobs import (
    BULK_JOB,
    BULK_QUEUE,
    MODEL_KEY_PREFIX,
    MODELS_SET,
    PROGRESS_META,
    SERIALIZER,
    BulkPayload,
    BulkResult,
    ModelRecord,
    Progress,
    bulk_queue,
)
from rerank_contract.settings import Settings

#: RQ job ids are made of these characters only.
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

Status = Literal["queued", "started", "finished", "failed", "canceled"]
_STATUS: dict[JobStatus, Status] = {
    JobStatus.CREATED: "queued",
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.SCHEDULED: "queued",
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "canceled",
    JobStatus.CANCELED: "canceled",
}
DONE: frozenset[Status] = frozenset({"finished", "failed", "canceled"})


class UnknownJob(LookupError):
    """No bulk job has this id: never submitted, not a bulk job, or expired."""


class AlreadyDone(Exception):
    """The job finished or failed; there is nothing left to cancel."""


class JobState(BaseModel):
    """Where a bulk job is; ``result`` once finished, ``error`` once failed or cancelled."""

    id: str
    status: Status
    progress: Progress | None = Field(None, description="Pairs scored so far, once a worker has started the job.")
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    result: BulkResult | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status in DONE


class BulkJobs:
    """Bulk-job operations against one Redis; every call is one or a few round trips."""

    def __init__(
        self, connection: Redis, *, job_timeout_s: int, result_ttl_s: int, failure_ttl_s: int, retries: int
    ) -> None:
        self._connection = connection
        self._retries = retries
        self._job_timeout_s = job_timeout_s
        self._result_ttl_s = result_ttl_s
        self._failure_ttl_s = failure_ttl_s

    @classmethod
    def from_settings(cls, connection: Redis, settings: Settings) -> BulkJobs:
        return cls(
            connection,
            job_timeout_s=settings.bulk_job_timeout_s,
            result_ttl_s=settings.bulk_result_ttl_s,
            failure_ttl_s=settings.bulk_failure_ttl_s,
            retries=settings.bulk_retries,
        )

    def submit(self, payload: BulkPayload, queue_name: str = BULK_QUEUE) -> str:
        """Enqueue ``payload`` on ``queue_name`` (a model's :func:`~rerank_contract.jobs.bulk_queue`; by default the
        default model's, ``rerank-bulk``); it stays queued (no TTL) until a worker of the model takes it, and runs
        again if its worker dies."""
        queue = Queue(queue_name, connection=self._connection, serializer=SERIALIZER)
        job = queue.enqueue(
            BULK_JOB,
            payload.model_dump(mode="json", exclude_none=True),  # unset new fields stay readable by older workers
            job_timeout=self._job_timeout_s,
            result_ttl=self._result_ttl_s,
            failure_ttl=self._failure_ttl_s,
            retry=Retry(max=self._retries) if self._retries else None,
            description=f"bulk: {len(payload.items)} items, {payload.pairs} pairs",
        )
        return job.id

    def model_queue(self, model: str | None) -> str:
        """The bulk queue of the model that has ``model`` among its names (None: the default model's,
        ``rerank-bulk``), from the workers' model records; LookupError naming the known models if none has it."""
        if model is None:
            return BULK_QUEUE
        names = sorted(cast("set[bytes]", self._connection.smembers(MODELS_SET)))  # replies undecoded, as RQ needs
        records = self._connection.mget([MODEL_KEY_PREFIX.encode() + n for n in names]) if names else []
        known = [ModelRecord.model_validate_json(r) for r in records if r]
        for record in known:
            if model in record.served_names or model == record.name:
                return bulk_queue(record.name)
        listed = ", ".join(r.name for r in known) or "none (no worker has run in the last day)"
        raise LookupError(f"no model named {model!r} is known to this Redis; known: {listed}")

    def fetch(self, job_id: str) -> Job:
        if not JOB_ID.match(job_id):
            raise UnknownJob(job_id)
        try:
            job = Job.fetch(job_id, connection=self._connection, serializer=SERIALIZER)
        except NoSuchJobError as exc:
            raise UnknownJob(job_id) from exc
        if job.func_name != BULK_JOB:
            raise UnknownJob(job_id)
        return job

    def state(self, job_id: str) -> JobState:
        job = self.fetch(job_id)
        status = _STATUS.get(job.get_status(refresh=False), "queued")
        progress = job.meta.get(PROGRESS_META)
        state = JobState(
            id=job.id,
            status=status,
            progress=Progress.model_validate(progress) if progress else None,
            enqueued_at=job.enqueued_at,
            started_at=job.started_at,
            ended_at=job.ended_at,
        )
        if status == "finished":
            state.result = BulkResult.model_validate(job.return_value())
        elif status in ("failed", "canceled"):
            result = job.latest_result()
            lines = [line for line in ((result.exc_string if result else "") or "").splitlines() if line.strip()]
            state.error = lines[-1] if lines else f"job {status}"
        return state

    def cancel(self, job_id: str) -> JobState:
        """Cancel a queued job (it never runs) or a running one (it stops after its current chunk)."""
        job = self.fetch(job_id)
        status = job.get_status(refresh=False)
        if status in (JobStatus.FINISHED, JobStatus.FAILED):
            raise AlreadyDone(f"job {job_id} is already {status.value}; nothing to cancel")
        if status == JobStatus.STARTED:
            job.set_status(JobStatus.CANCELED)  # the worker checks between chunks and stops it
        elif status not in (JobStatus.CANCELED, JobStatus.STOPPED):
            try:
                job.cancel()
            except InvalidJobOperation:  # cancelled meanwhile: the outcome is the same
                pass
            except (ValueError, NotImplementedError):  # a worker started it meanwhile: RQ cannot cancel it
                job.set_status(JobStatus.CANCELED)
        return self.state(job_id)
