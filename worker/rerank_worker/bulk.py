"""Bulk jobs, driven chunk by chunk by the worker that runs them, and resumed where they stopped.

Chunking keeps the worker's memory bounded whatever the job's size, gives progress to report, and
gives the worker a point between chunks to serve the sync jobs waiting (a long bulk job delays a
sync request by at most one chunk), to keep the job's heartbeats fresh, and to notice that the job
was cancelled. The whole job runs under its RQ job timeout.

Each finished chunk's scores are recorded in Redis beside the job (:class:`ChunkRecord`), so a job run
again after its worker died (the reaper hands it back to RQ, which retries it) scores only the chunks
not recorded yet: at most the chunk in hand when the worker died is scored twice. The record expires
with the job (its job timeout plus its failure TTL), and is deleted once the job's result is stored;
the job then keeps a summary in ``job.meta[CHUNKS_META]``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from redis import Redis
from rq import SimpleWorker
from rq.job import Job, JobStatus
from rq.utils import now

from rerank_contract.defaults import BULK_FAILURE_TTL_S, BULK_JOB_TIMEOUT_S
from rerank_contract.jobs import PROGRESS_META, BulkPayload, Progress
from rerank_worker import jobs, rq_seam
from rerank_worker.scorer import Scorer

log = logging.getLogger(__name__)

#: ``job.meta`` key of a finished bulk job: ``{"chunks": N, "scored": S, "runs": R}``, S counting every chunk
#: any run started (so S - N chunks were scored twice), R the runs that scored something.
CHUNKS_META = "chunks"


class JobCancelled(Exception):
    """A running bulk job was cancelled; RQ records it as stopped."""


class ChunkRecord:
    """The chunks of one bulk job scored so far, in one Redis hash: ``chunk_pairs`` (how the job is cut,
    fixed by its first run), ``started`` and ``runs`` (counters), and one field per finished chunk holding
    its scores and tokens."""

    def __init__(self, connection: Redis, job: Job) -> None:
        self._connection = connection
        self.key = f"rerank:bulk-chunks:{job.id}"
        self._ttl = int(job.timeout or BULK_JOB_TIMEOUT_S) + int(job.failure_ttl or BULK_FAILURE_TTL_S)

    def open(self, chunk_pairs: int) -> tuple[int, dict[int, dict]]:
        """Begin a run: the chunk size to cut with (the first run's) and the finished chunks by index
        (``{"scores": per slice, "tokens": per slice}``)."""
        with self._connection.pipeline() as pipe:
            pipe.hsetnx(self.key, "chunk_pairs", chunk_pairs)
            pipe.hgetall(self.key)
            pipe.expire(self.key, self._ttl)
            _, fields, _ = pipe.execute()
        finished = {int(k): json.loads(v) for k, v in fields.items() if k.isdigit()}
        return int(fields[b"chunk_pairs"]), finished

    def starting(self, first: bool) -> None:
        """A chunk is about to be scored (counted before, so a chunk cut short by a kill counts too)."""
        with self._connection.pipeline() as pipe:
            pipe.hincrby(self.key, "started", 1)
            if first:
                pipe.hincrby(self.key, "runs", 1)
            pipe.execute()

    def finished(self, index: int, scores: list[list[float]], tokens: list[int]) -> None:
        """Chunk ``index`` is scored: its slices' scores and the tokens each put through the model."""
        with self._connection.pipeline() as pipe:
            pipe.hset(self.key, str(index), json.dumps({"scores": scores, "tokens": tokens}))
            pipe.expire(self.key, self._ttl)
            pipe.execute()

    def counts(self) -> tuple[int, int]:
        """Chunks started and runs that scored something, over every run."""
        started, runs = self._connection.hmget(self.key, "started", "runs")
        return int(started or 0), int(runs or 0)

    def delete(self) -> None:
        self._connection.delete(self.key)


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
    record = ChunkRecord(worker.connection, job)
    rq_seam.start(worker, [running])
    try:
        with rq_seam.time_limit(worker, rq_seam.job_timeout(job), job):
            (raw,) = job.args
            payload = BulkPayload.model_validate(raw)
            scores = [[0.0] * len(item.candidates) for item in payload.items]
            tokens = [0] * len(payload.items)
            chunk_pairs, finished = record.open(chunk_pairs)
            cut = list(jobs.chunks(payload, chunk_pairs))
            done = _restore(cut, finished, scores, tokens)
            if finished:
                log.info("resuming bulk job %s: %d of %d chunks already scored", job.id, len(finished), len(cut))
            inference_s = 0.0
            _record(job, Progress(done=done, total=payload.pairs))
            first = True
            for index, chunk in enumerate(cut):
                if index in finished:
                    continue
                record.starting(first)
                first = False
                before = [tokens[i] for i, _, _ in chunk]
                started = time.perf_counter()
                done += jobs.score_chunk(scorer, payload, chunk, scores, tokens)
                inference_s += time.perf_counter() - started
                record.finished(
                    index,
                    [scores[i][a:b] for i, a, b in chunk],
                    [tokens[i] - was for (i, _, _), was in zip(chunk, before, strict=True)],
                )
                _record(job, Progress(done=done, total=payload.pairs))
                if done < payload.pairs:
                    between_chunks()
                    rq_seam.keep_alive(worker, running)
            result = jobs.bulk_result(
                scorer, payload, scores, worker=worker.name, inference_ms=inference_s * 1000, tokens=tokens
            )
            scored, runs = record.counts()
            job.meta[CHUNKS_META] = {"chunks": len(cut), "scored": scored, "runs": runs}
            job.save_meta()
    except JobCancelled:
        record.delete()
        rq_seam.fail(worker, running, rq_seam.caught(), now(), stopped=True)
        return False
    except Exception:
        rq_seam.fail(worker, running, rq_seam.caught(), now())
        return False
    rq_seam.succeed(worker, [(running, result)], now())
    record.delete()  # the result holds every score now
    log.info("finished bulk job %s (%d pairs)", job.id, payload.pairs)
    return True


def _restore(
    cut: list[list[jobs.Slice]], finished: dict[int, dict], scores: list[list[float]], tokens: list[int]
) -> int:
    """Put the recorded chunks' scores and tokens in place; returns how many pairs they hold."""
    done = 0
    for index, chunk in enumerate(cut):
        if index in finished:
            recorded = finished[index]
            for (i, a, b), values, used in zip(chunk, recorded["scores"], recorded["tokens"], strict=True):
                scores[i][a:b] = values
                tokens[i] += used
                done += b - a
    return done


def _record(job: Job, progress: Progress) -> None:
    """Publish progress, and stop here if the job was cancelled meanwhile."""
    job.meta[PROGRESS_META] = progress.model_dump()
    job.save_meta()
    if job.get_status(refresh=True) in (JobStatus.CANCELED, JobStatus.STOPPED):
        raise JobCancelled(f"job {job.id} was cancelled after {progress.done} of {progress.total} pairs")
