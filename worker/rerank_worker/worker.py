"""The RQ worker class: jobs run in this process so the model stays resident.

RQ's default ``Worker`` forks a work-horse per job, which breaks CUDA and MPS; ``SimpleWorker``
runs jobs in-process. :class:`RerankJob` refuses every function outside the contract's allowlist
before RQ imports it, so a job naming ``os.system`` fails instead of running.
"""

from __future__ import annotations

from typing import Any

from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import StartedJobRegistry

from rerank_server.contract import ALLOWED_JOB_FUNCTIONS


class RefusedJob(Exception):
    """A job named a function this worker does not run."""


class RerankJob(Job):
    """A job that only runs this project's job functions."""

    def _execute(self) -> Any:
        if self.func_name not in ALLOWED_JOB_FUNCTIONS:
            raise RefusedJob(f"refused job {self.id}: {self.func_name!r} is not one of {sorted(ALLOWED_JOB_FUNCTIONS)}")
        return super()._execute()


class RerankWorker(SimpleWorker):
    """A SimpleWorker whose jobs are :class:`RerankJob`, counting its outcomes for the heartbeat."""

    job_class = RerankJob
    jobs_done = 0
    jobs_failed = 0

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        super().handle_job_success(job, queue, started_job_registry)
        self.jobs_done += 1

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry | None = None, exc_string: str = ""
    ) -> None:
        super().handle_job_failure(job, queue, started_job_registry, exc_string)
        self.jobs_failed += 1
