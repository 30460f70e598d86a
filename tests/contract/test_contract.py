"""The job contract: names, shapes and ordering shared by API, worker and outside clients."""

from __future__ import annotations

import json
import subprocess
import sys

import fakeredis
import pytest
from pydantic import ValidationError
from rq import Queue

from rerank_contract import jobs as contract


def test_rank_sorts_best_first_and_keeps_input_order_on_ties() -> None:
    ranked = contract.rank([0.2, 0.9, 0.2, 0.5])
    assert [(r.index, r.score) for r in ranked] == [(1, 0.9), (3, 0.5), (0, 0.2), (2, 0.2)]
    assert contract.rank([]) == []


def test_payload_rejects_unknown_fields_and_wrong_types() -> None:
    assert contract.RerankPayload(query="q", candidates=["a"]).score_mode is contract.ScoreMode.ACTIVATED
    with pytest.raises(ValidationError, match="extra"):
        contract.RerankPayload.model_validate({"query": "q", "candidates": ["a"], "pickle": "x"})
    with pytest.raises(ValidationError, match="candidates"):
        contract.RerankPayload.model_validate({"query": "q", "candidates": [1]})


def test_payload_round_trips_through_rq_json_serializer() -> None:
    from rq.serializers import resolve_serializer

    serializer = resolve_serializer(contract.SERIALIZER)
    payload = contract.RerankPayload(query="q", candidates=["a", "b"], score_mode="raw")
    data = serializer.loads(serializer.dumps(payload.model_dump(mode="json")))
    assert contract.RerankPayload.model_validate(data) == payload


def test_queues_keep_their_names_and_a_worker_takes_sync_before_older_bulk_jobs() -> None:
    """Direct RQ clients enqueue by these names; a worker listening on them in this order (RQ pops the first
    non-empty queue) takes a waiting sync job before a bulk job queued earlier."""
    assert contract.QUEUES == ("rerank", "rerank-bulk")
    connection = fakeredis.FakeStrictRedis()
    queues = [Queue(name, connection=connection, serializer=contract.SERIALIZER) for name in contract.QUEUES]
    by_name = {queue.name: queue for queue in queues}
    by_name[contract.BULK_QUEUE].enqueue(contract.BULK_JOB, {"items": []})
    sync = by_name[contract.SYNC_QUEUE].enqueue(contract.RERANK_JOB, {"query": "q", "candidates": ["a"]})
    job, queue = Queue.dequeue_any(queues, None, connection=connection, serializer=contract.SERIALIZER)
    assert (job.id, queue.name) == (sync.id, contract.SYNC_QUEUE)


def test_allowlisted_job_functions_exist_on_the_worker() -> None:
    from rq.utils import import_attribute

    for path in contract.ALLOWED_JOB_FUNCTIONS:
        assert callable(import_attribute(path))


def test_contract_and_api_import_without_torch() -> None:
    code = (
        "import sys, rerank_contract.jobs, rerank_contract.settings, rerank_api.app;"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_bulk_items_must_be_valid_unicode() -> None:
    """A lone surrogate (JSON's "\\ud800") is refused where it enters, not by the tokenizer later."""
    item = json.loads('{"id": "q\\u00e9", "query": "\\ud83d\\ude00", "candidates": ["a\\u0000b"]}')
    assert contract.BulkItem.model_validate(item).query == "\N{GRINNING FACE}"  # a surrogate pair is one character
    for field, value in [("id", "\ud800"), ("query", "a\udfff"), ("candidates", ["ok", "\ud83d"])]:
        with pytest.raises(ValidationError, match="not valid Unicode: lone surrogate"):
            contract.BulkItem.model_validate({**item, field: value})
