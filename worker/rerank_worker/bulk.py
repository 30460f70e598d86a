"""Bulk jobs, driven chunk by chunk by the worker that runs them.

Chunking keeps the worker's memory bounded whatever the job's size, gives progress to report, and
gives the worker a point between chunks to serve the sync jobs waiting (a long bulk job delays a
sync request by at most one chunk), to keep the job's heartbeats fresh, and to notice that the job
was cancelled. The whole job runs under its RQ job timeout.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from rq import SimpleWorker
from rq.job import Job, JobStatus
from rq.utils import now

from rerank_contract.jobs import PROGRESS_META, BulkPayload, Progress
from rerank_worker import jobs, rq_seam
from rerank_worker.scoring import Scorer

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """A running bulk job was cancelled; RQ records it as stopped."""


def run(
    worker: SimpleWorker,
    scorer: Scorer,
    running: rq_seam.Running,
    *,
    chunk_pairs: int,
    between_chunks: Callable[[], None],
) -> bool:
    """Run one bulk job to its end, recorded through RQ; ``between_chunks`` serves other work. True if it succeeded."""
    job = running.job
    rq_seam.start(worker, [running])
    try:
        with rq_seam.time_limit(worker, rq_seam.job_timeout(job), job):
            (raw,) = job.args
            payload = BulkPayload.model_validate(raw)
            scores = [[0.0] * len(item.candidates) for item in payload.items]
            tokens = [0] * len(payload.items)
            done, inference_s = 0, 0.0
            _record(job, Progress(done=0, total=payload.pairs))
            for chunk in jobs.chunks(payload, chunk_pairs):
                started = time.perf_counter()
                done += jobs.score_chunk(scorer, payload, chunk, scores, tokens)
                inference_s += time.perf_counter() - started
                _record(job, Progress(done=done, total=payload.pairs))
                if done < payload.pairs:
                    between_chunks()
                    rq_seam.keep_alive(worker, running)
            result = jobs.bulk_result(
                scorer, payload, scores, worker=worker.name, inference_ms=inference_s * 1000, tokens=tokens
            )
    except JobCancelled:
        rq_seam.fail(worker, running, sys.exc_info(), now(), stopped=True)  # type: ignore[arg-type]
        return False
    except Exception:
        rq_seam.fail(worker, running, sys.exc_info(), now())  # type: ignore[arg-type]
        return False
    rq_seam.succeed(worker, [(running, result)], now())
    log.info("finished bulk job %s (%d pairs)", job.id, payload.pairs)
    return True


def _record(job: Job, progress: Progress) -> None:
    """Publish progress, and stop here if the job was cancelled meanwhile."""
    job.meta[PROGRESS_META] = progress.model_dump()
    job.save_meta()
    if job.get_status(refresh=True) in (JobStatus.CANCELED, JobStatus.STOPPED):
        raise JobCancelled(f"job {job.id} was cancelled after {progress.done} of {progress.total} pairs")
