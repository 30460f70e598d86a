"""Which jobs this worker runs: the trust boundary for whoever can write to Redis.

A job hash can name any function, callbacks that RQ would import and call, webhooks that RQ would send
to any URL, and repeats. This worker runs only the contract's job functions, and refuses a job that
asks for anything else, before any of it is imported, called or sent: the job fails with a reason
that says what was refused. (:class:`~rerank_worker.rq_seam.RerankJob` additionally never imports a
callback or sends a webhook on any RQ path, so a job that reaches one unchecked still cannot.)
"""

from __future__ import annotations

from rq.exceptions import DeserializationError
from rq.job import Job

from rerank_contract.jobs import ALLOWED_JOB_FUNCTIONS
from rerank_worker import rq_seam


class RefusedJob(Exception):
    """A job asked for something this worker does not do; the message says what."""


def refusal(job: Job) -> RefusedJob | None:
    """Why ``job`` must not run, or None when it is one of ours and asks for nothing else."""
    try:
        func_name = job.func_name
    except DeserializationError:
        return RefusedJob(f"refused job {job.id}: its data is not JSON (jobs must use RQ's JSONSerializer)")
    if func_name not in ALLOWED_JOB_FUNCTIONS:
        return RefusedJob(f"refused job {job.id}: {func_name!r} is not one of {sorted(ALLOWED_JOB_FUNCTIONS)}")
    asked = []
    if callbacks := rq_seam.callbacks_asked(job):
        asked.append("callbacks (" + ", ".join(f"{kind}={name}" for kind, name in sorted(callbacks.items())) + ")")
    if urls := rq_seam.webhook_urls(job):
        asked.append(f"webhooks ({', '.join(urls)})")
    if rq_seam.repeats_asked(job):
        asked.append("repeats")
    if asked:
        return RefusedJob(f"refused job {job.id}: this service runs no {' or '.join(asked)}; none was run or sent")
    return None
