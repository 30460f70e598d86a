"""The RQ surface this project relies on beyond RQ's documented API (``rerank_worker.rq_seam``).

If this fails after an RQ upgrade, the message names each member that moved: adapt rq_seam.py (and
only it), or keep RQ at the version pinned in pyproject.toml.
"""

from __future__ import annotations

import re

import fakeredis
import pytest
import rq
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.job import Job

from rerank_worker import rq_seam


def test_every_rq_member_the_seam_uses_exists_with_the_parameters_used() -> None:
    problems = [p for member in rq_seam.SURFACE if (p := member.problem()) is not None]
    assert not problems, f"RQ {rq.__version__} no longer offers what rerank_worker/rq_seam.py uses:\n" + "\n".join(
        problems
    )


def test_instance_attributes_the_seam_uses_are_set_by_rq() -> None:
    connection = fakeredis.FakeStrictRedis()
    queue = Queue("q", connection=connection)
    job = Job.fetch(queue.enqueue("rerank_worker.jobs.rerank", {}).id, connection=connection)
    worker = SimpleWorker([queue], connection=connection)
    instances = {SimpleWorker: worker, Job: job, Pipeline: connection.pipeline()}
    missing = [
        f"{owner.__name__}.{name}"
        for owner, names in rq_seam.INSTANCE_ATTRIBUTES.items()
        for name in names
        if not hasattr(instances[owner], name)
    ]
    assert not missing, f"RQ {rq.__version__} no longer sets {missing}: adapt rerank_worker/rq_seam.py"


def test_the_check_names_a_member_that_is_gone_or_changed() -> None:
    """The check itself can fail: a renamed member or parameter is reported, with the member's name."""
    gone = rq_seam.Member(SimpleWorker, "handle_job_successfully", ("job",))
    renamed = rq_seam.Member(SimpleWorker, "handle_job_failure", ("job", "execution"))
    assert gone.problem() == "rq.worker.worker_classes.SimpleWorker.handle_job_successfully is gone"
    assert "lacks parameters ['execution']" in (renamed.problem() or "")


def test_rq_is_the_minor_version_the_seam_was_built_on() -> None:
    assert rq.__version__.startswith("2.12."), f"rq_seam.py was built against rq 2.12, not {rq.__version__}"


def _records(connection: fakeredis.FakeStrictRedis) -> dict[str, object]:
    """Every key's type, expiry and content, with execution ids and times replaced by placeholders (they differ
    from run to run), so two runs of the same jobs compare equal exactly when they wrote the same records."""
    executions: dict[str, str] = {}  # execution id -> its job's id
    for key in connection.keys("rq:executions:*"):
        executions.update((m.decode(), key.decode().split(":")[2]) for m in connection.zrange(key, 0, -1))
    for key in connection.keys("rq:results:*"):
        executions.update((f[b"execution_id"].decode(), key.decode().split(":")[2]) for _, f in connection.xrange(key))
    times = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z$|^1\d{9}(\.\d+)?$")

    def clean(value: object) -> object:
        text = value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)
        for execution, job in executions.items():  # a 32-hex id, or its prefix in key names
            text = text.replace(execution, f"<execution of {job}>").replace(execution[:10], f"<execution of {job}>")
        return "<time>" if times.match(text) else text

    out: dict[str, object] = {}
    for raw in sorted(connection.keys("*")):
        key, kind = clean(raw), connection.type(raw).decode()
        ttl = connection.ttl(raw)
        if kind == "hash":
            content: object = {clean(f): clean(v) for f, v in connection.hgetall(raw).items()}
            if "total_working_time" in content:  # seconds between a start and an end: differs from run to run
                content["total_working_time"] = "<seconds>"
        elif kind == "zset":
            content = sorted(clean(m) for m, _ in connection.zrange(raw, 0, -1, withscores=True))
        elif kind == "stream":
            content = [{clean(f): clean(v) for f, v in fields.items()} for _, fields in connection.xrange(raw)]
        elif kind == "list":
            content = [clean(v) for v in connection.lrange(raw, 0, -1)]
        else:
            content = kind
        out[str(key)] = (kind, ttl if ttl < 0 else round(ttl, -1), content)
    return out


@pytest.mark.parametrize("result_ttl", [600, 0], ids=["kept", "deleted-at-once"])
def test_batch_start_and_success_leave_the_records_rq_own_path_leaves(result_ttl: int) -> None:
    """The seam's batched start and success (one script each, no full re-save of the job hash) against RQ's own
    ``prepare_execution`` + ``prepare_job_execution`` and ``handle_job_success``, job by job, on the same jobs."""
    from rerank_contract.jobs import BULK_QUEUE, RERANK_JOB, SERIALIZER, SYNC_QUEUE
    from rerank_worker.scoring import FakeScorer
    from rerank_worker.worker import RerankWorker

    def setup() -> tuple[fakeredis.FakeStrictRedis, RerankWorker, list[Job], Queue]:
        connection = fakeredis.FakeStrictRedis(server=fakeredis.FakeServer())
        queue = Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER)
        queues = [queue, Queue(BULK_QUEUE, connection=connection, serializer=SERIALIZER)]
        worker = RerankWorker(
            queues, connection=connection, serializer=SERIALIZER, scorer=FakeScorer(), max_batch_pairs=64,
            bulk_chunk_pairs=8, name="the-worker",
        )  # fmt: skip
        worker.register_birth()
        for n in range(2):
            payload = {"query": f"q{n}", "candidates": ["a", "b"]}
            queue.enqueue(RERANK_JOB, payload, job_id=f"job-{n}", result_ttl=result_ttl, ttl=30, job_timeout=30)
        connection.delete(queue.key)  # dequeued
        jobs = [rq_seam.RerankJob.fetch(f"job-{n}", connection=connection, serializer=SERIALIZER) for n in range(2)]
        return connection, worker, jobs, queue

    theirs, rq_worker, rq_jobs, rq_queue = setup()
    ours, worker, jobs, queue = setup()
    rq_worker.prepare_execution(rq_jobs[0])
    rq_worker.prepare_job_execution(rq_jobs[0])
    running = [rq_seam.Running(job, queue) for job in jobs]
    rq_seam.start(worker, running[:1])
    assert _records(ours) == _records(theirs)

    rq_worker.prepare_execution(rq_jobs[1])
    rq_worker.prepare_job_execution(rq_jobs[1])
    rq_seam.start(worker, running[1:])
    ended = rq.utils.now()
    for n, job in enumerate(rq_jobs):
        job._result, job.ended_at = {"n": n}, ended
        (rq_worker.execution,) = job.get_executions()  # RQ's worker holds the execution of the job it runs
        rq_worker.handle_job_success(job, rq_queue, rq_queue.started_job_registry)
    rq_seam.succeed(worker, [(r, {"n": n}) for n, r in enumerate(running)], ended)
    assert _records(ours) == _records(theirs)
    if result_ttl:  # and RQ reads them back
        assert rq_seam.RerankJob.fetch("job-1", connection=ours, serializer=SERIALIZER).return_value() == {"n": 1}
    else:
        assert not ours.exists(rq_seam.RerankJob.key_for("job-1"))


def test_a_failing_command_stops_neither_the_others_nor_its_error() -> None:
    """Like MULTI/EXEC: every command of the script runs, and the first error is raised."""
    from redis.exceptions import ResponseError

    connection = fakeredis.FakeStrictRedis()
    connection.set("a-string", "x")
    worker = SimpleWorker([Queue("q", connection=connection)], connection=connection)
    buffer = rq_seam._buffer(worker)
    buffer.set("before", 1)
    buffer.hset("a-string", "field", 1)  # WRONGTYPE
    buffer.set("after", 2)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        rq_seam._run(connection, buffer)
    assert connection.get("before") == b"1" and connection.get("after") == b"2"
