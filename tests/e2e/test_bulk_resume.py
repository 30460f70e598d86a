"""A bulk job continues where it stopped when the worker running it is SIGKILLed and another takes over."""

from __future__ import annotations

import signal

from redis import Redis

from rerank_contract.bulk_jobs import BulkJobs
from rerank_contract.jobs import PROGRESS_META, BulkPayload
from tests.support.bulk_items import items
from tests.support.ranking import assert_equals_predict
from tests.support.waiting import wait_until


def test_a_worker_killed_mid_job_is_resumed_by_the_next_one(make_stack, cross_encoder) -> None:
    stack = make_stack(BULK_CHUNK_PAIRS="8", BATCH_SIZE="8")
    stack.start_api()
    first = stack.start_worker()
    connection = Redis.from_url(stack.redis_url, socket_timeout=5)
    jobs = BulkJobs(connection, job_timeout_s=600, result_ttl_s=600, failure_ttl_s=600, retries=2)
    payload = {"items": items(60, 12)}  # 720 pairs: 90 chunks of 8
    job_id = jobs.submit(BulkPayload.model_validate(payload))

    def progressed() -> bool:
        progress = jobs.state(job_id).progress
        return progress is not None and progress.done >= 40

    wait_until(progressed, 60, "the bulk job to be under way", interval=0.005)
    with first.frozen():  # stopped at once: the progress read next is where it died
        at_kill = jobs.state(job_id).progress
        first.signal(signal.SIGKILL)
    assert at_kill is not None and 40 <= at_kill.done < at_kill.total, at_kill
    first.proc.wait(10)

    stack.start_worker()  # its reaper hands the dead worker's job back to RQ, which runs it again
    wait_until(lambda: jobs.state(job_id).done, 120, "the resumed bulk job to finish")
    state = jobs.state(job_id)
    assert state.status == "finished", state
    meta = jobs.fetch(job_id).get_meta()
    assert meta[PROGRESS_META] == {"done": 720, "total": 720}
    assert meta["chunks"]["chunks"] == 90 and meta["chunks"]["runs"] == 2
    assert meta["chunks"]["scored"] <= 90 + 1  # counted by the workers, in Redis, before each chunk
    assert_equals_predict(state.result, payload, cross_encoder)
