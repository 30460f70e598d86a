"""The RQ surface this project relies on beyond RQ's documented API: one seam per side
(``rerank_worker.rq_seam``, ``rerank_api.rq_seam``), and one script runner (``rerank_contract.scripts``).

If this fails after an RQ upgrade, the message names each member that moved: adapt that side's rq_seam.py
(and only it), or keep RQ at the version pinned in pyproject.toml.
"""

from __future__ import annotations

import fakeredis
import pytest
import rq
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.job import Job

from rerank_api import rq_seam as api_seam
from rerank_worker import rq_seam

SEAMS = {"rerank_worker/rq_seam.py": rq_seam, "rerank_api/rq_seam.py": api_seam}


@pytest.mark.parametrize("path", SEAMS)
def test_every_rq_member_the_seam_uses_exists_with_the_parameters_used(path: str) -> None:
    problems = [p for member in SEAMS[path].SURFACE if (p := member.problem()) is not None]
    assert not problems, f"RQ {rq.__version__} no longer offers what {path} uses:\n" + "\n".join(problems)


def test_the_api_seam_reads_what_rq_writes() -> None:
    """The raw job-hash field and the result stream the API reads are where RQ's own start and result write them."""
    from rerank_contract.jobs import SERIALIZER

    connection = fakeredis.FakeStrictRedis()
    queue = Queue("q", connection=connection, serializer=SERIALIZER)
    job = queue.enqueue("rerank_worker.jobs.rerank", {})
    with connection.pipeline() as pipe:
        job.prepare_for_execution("w", pipeline=pipe)
        pipe.execute()
    assert rq_seam.worker_of(connection, job.id) == "w"
    assert connection.hget(Job.key_for(job.id), api_seam.WORKER_NAME_FIELD) == b"w"
    from rq.results import Result

    Result.create(job, Result.Type.SUCCESSFUL, ttl=60, return_value={"x": 1}, worker_name="w")
    ((entry_id, fields),) = connection.xrange(api_seam.result_key(job.id))
    parsed = api_seam.parse_result(job.id, entry_id, fields)
    assert parsed.type == Result.Type.SUCCESSFUL and parsed.return_value == {"x": 1}
    assert api_seam.queue_key("q") == queue.key
    buffer = connection.pipeline()
    buffer.set("k", "v")
    assert api_seam.buffered(buffer) == [("SET", "k", "v")]


def test_instance_attributes_the_seam_uses_are_set_by_rq() -> None:
    connection = fakeredis.FakeStrictRedis()
    queue = Queue("q", connection=connection)
    job = Job.fetch(queue.enqueue("rerank_worker.jobs.rerank", {}).id, connection=connection)
    worker = SimpleWorker([queue], connection=connection)
    from redis.client import PubSubWorkerThread

    instances = {
        SimpleWorker: worker,
        Job: job,
        Pipeline: connection.pipeline(),
        Queue: queue,
        PubSubWorkerThread: PubSubWorkerThread(connection.pubsub(), sleep_time=1),
    }
    missing = [
        f"{owner.__name__}.{name}"
        for seam in SEAMS.values()
        for owner, names in seam.INSTANCE_ATTRIBUTES.items()
        for name in names
        if not hasattr(instances[owner], name)
    ]
    assert not missing, f"RQ {rq.__version__} no longer sets {missing}: adapt the rq_seam.py that names them"


def test_the_check_names_a_member_that_is_gone_or_changed() -> None:
    """The check itself can fail: a renamed member or parameter is reported, with the member's name."""
    gone = rq_seam.Member(SimpleWorker, "handle_job_successfully", ("job",))
    renamed = rq_seam.Member(SimpleWorker, "handle_job_failure", ("job", "execution"))
    assert gone.problem() == "rq.worker.worker_classes.SimpleWorker.handle_job_successfully is gone"
    assert "lacks parameters ['execution']" in (renamed.problem() or "")


def test_rq_is_the_minor_version_the_seam_was_built_on() -> None:
    assert rq.__version__.startswith("2.12."), f"rq_seam.py was built against rq 2.12, not {rq.__version__}"


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


def test_lua_is_run_by_one_runner_only() -> None:
    """One way to run a script, with one error rule: ``rerank_contract.scripts``; no other module sends EVAL."""
    import re
    from pathlib import Path

    sends = re.compile(r'\.evalsha\(|"EVALSHA"|"EVAL"|register_script\(|(connection|redis|client)\.eval\(')
    root = Path(__file__).resolve().parents[2]
    sources = [p for d in ("api", "worker", "contract", "rerank_server") for p in (root / d).rglob("*.py")]
    runners = [str(p.relative_to(root)) for p in sources if sends.search(p.read_text())]
    assert runners == ["contract/rerank_contract/scripts.py"], runners
