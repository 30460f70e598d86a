"""Under heavy concurrency every answer reaches its own caller: one API's shared result reader, two workers.

Hundreds of requests in flight at once, each with its own query, candidate order and size, so a result
handed to the wrong waiter (or scored in another job's place within a batch) shows as a wrong ranking.
"""

from __future__ import annotations

import asyncio
import random

import httpx

from tests.support.ranking import assert_matches, expected
from tests.support.tiny_model import TOPICS


def test_hundreds_of_concurrent_calls_each_get_their_own_scores(make_stack, cross_encoder) -> None:
    stack = make_stack(MAX_BATCH_PAIRS="64")  # several batches per worker, so jobs mix across batches
    stack.start_api()
    stack.start_worker()
    stack.start_worker()
    rng = random.Random(7)
    topics = list(TOPICS)
    passages = [p for docs in TOPICS.values() for p in docs]
    requests = [(rng.choice(topics), rng.sample(passages, rng.randint(1, 8))) for _ in range(400)]

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=stack.url, timeout=120, limits=limits) as client:
            return await asyncio.gather(
                *(client.post("/v1/rerank", json={"query": q, "candidates": c}) for q, c in requests)
            )

    responses = asyncio.run(fire())
    failed = [r.json() for r in responses if r.status_code != 200]
    assert not failed, f"{len(failed)} calls failed, the first: {failed[0]}"
    for (query, candidates), response in zip(requests, responses, strict=True):
        assert_matches(response.json(), expected(cross_encoder, query, candidates))


def test_an_idle_connection_stays_open_past_a_clients_pool_expiry(make_stack) -> None:
    """The API keeps an idle keep-alive connection open well past the 5 s that uvicorn (and httpx's pool) default to.

    A server that closes an idle connection while a client sends its next request on it fails that request with
    a reset (httpx: ReadError, as ``test_hundreds_...`` above once lost a call, its pool replacing connections
    that had idled 5 s on a loaded machine). Here a connection idles 6 s, then carries a second request.
    """
    import http.client
    import time

    stack = make_stack()
    stack.start_api()
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    connection.request("GET", "/health")
    connection.getresponse().read()
    local = connection.sock.getsockname()
    time.sleep(6)  # the idle time is what is tested: longer than uvicorn's and httpx's 5 s defaults
    connection.request("GET", "/health")  # http.client does not reconnect: a closed connection raises here or below
    response = connection.getresponse()
    response.read()
    assert response.status in (200, 503)  # no worker: 503, but an answer on the same connection
    assert connection.sock.getsockname() == local
    connection.close()
