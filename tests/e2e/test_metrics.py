"""``GET /metrics`` of a real API with a real worker: requests, jobs, batches, queues and workers counted."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.seed import SEED_CANDIDATES, SEED_QUERY
from tests.support.services import Stack


def scrape(url: str, **headers: str) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_jobs_batches_queue_and_workers(stack: Stack) -> None:
    before = scrape(stack.url)
    for _ in range(3):
        assert stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200
    assert httpx.get(f"{stack.url}/v1/jobs/no-such-job").status_code == 404
    assert httpx.get(f"{stack.url}/no/such/route").status_code == 404
    after = scrape(stack.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"method": "POST", "route": "/v1/rerank"}
    assert delta("rerank_http_requests_total", status="200", **ok) == 3
    assert delta("rerank_http_request_duration_seconds_count", **ok) == 3
    # Routes are labelled by template, and paths that match no route share one label.
    assert delta("rerank_http_requests_total", method="GET", route="/v1/jobs/{job_id}", status="404") == 1
    assert delta("rerank_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(after, "rerank_http_requests_in_flight") == 1  # the scrape itself
    # One job per request, each scored alone (the requests were sequential): 3 pairs per batch.
    assert delta("rerank_job_queue_seconds_count") == 3
    assert delta("rerank_job_inference_seconds_count") == 3
    assert delta("rerank_job_inference_seconds_sum") > 0
    assert delta("rerank_batch_jobs_sum") == 3
    assert delta("rerank_batch_pairs_sum") == 3 * len(SEED_CANDIDATES)
    assert delta("rerank_batch_pairs_bucket", le="2.0") == 0
    assert delta("rerank_batch_pairs_bucket", le="4.0") == 3
    # From the monitor's snapshot.
    assert value(after, "rerank_workers_alive") == 1
    assert value(after, "rerank_redis_up") == 1
    assert value(after, "rerank_queue_depth", queue="rerank") == 0
    assert ("rerank_queue_depth", frozenset({("queue", "rerank-bulk")})) in after
