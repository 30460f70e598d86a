"""The RQ surface this project relies on beyond RQ's documented API (``rerank_worker.rq_seam``).

If this fails after an RQ upgrade, the message names each member that moved: adapt rq_seam.py (and
only it), or keep RQ at the version pinned in pyproject.toml.
"""

from __future__ import annotations

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
