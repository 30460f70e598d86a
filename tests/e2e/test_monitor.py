"""End to end: worker records the API cannot read do not stop its monitor (real redis-server, worker and API)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import httpx
from redis import Redis

from rerank_contract.jobs import WORKERS_SET, worker_key
from tests.support.error_answers import assert_error
from tests.support.ranking import assert_matches, expected
from tests.support.seed import SEED_CANDIDATES, SEED_QUERY
from tests.support.services import Stack
from tests.support.waiting import wait_until

#: The API's monitor refreshes every 0.5 s: this is several intervals.
WATCH_S = 3.0

GARBAGE = {
    "garbage": b"{this is not json",
    "older": json.dumps({"name": "older", "host": "h", "pid": 1}).encode(),  # another version's, fields missing
    "binary": b"\xff\xfe\x00\x80",
}


def test_unreadable_worker_records_do_not_stop_the_monitor(
    make_stack: Callable[..., Stack], cross_encoder, model_dir
) -> None:
    stack = make_stack()
    stack.start_api()
    stack.start_worker()
    [worker] = stack.health()["workers"]
    redis = Redis.from_url(stack.redis_url, socket_timeout=5)
    for name, value in GARBAGE.items():
        redis.set(worker_key(name), value)
    redis.sadd(WORKERS_SET, *GARBAGE)

    want = expected(cross_encoder, SEED_QUERY, SEED_CANDIDATES)
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        response = stack.rerank(SEED_QUERY, SEED_CANDIDATES)
        assert response.status_code == 200, response.text
        assert_matches(response.json(), want)
        health = httpx.get(f"{stack.url}/health", timeout=5)
        assert health.status_code == 200, health.text
        body = health.json()
        assert body["workers_alive"] == 1
        assert [w["name"] for w in body["workers"]] == [worker["name"]]
        assert body["model"] == str(model_dir)
        assert sorted(body["unreadable_workers"]) == sorted(GARBAGE)
        assert body["monitor_age_s"] < 2
        assert (body["status"], body["problems"]) == ("ok", [])  # the worker's reaper sweeps and says so
        assert body["reaper_age_s"] is None or body["reaper_age_s"] < 3
        time.sleep(0.25)  # paces the requests: the watch's length (several monitor refreshes) is the case under test

    # The background loop still follows the workers: once the only real one is gone, a request is refused at
    # once (the request path reads the monitor's view, never asks Redis itself).
    stack.workers[0].stop()
    wait_until(lambda: not redis.exists(worker_key(worker["name"])), 10, "the worker's record to go")
    # /metrics reads the background loop's view as it is (/health would refresh it): wait for the loop to drop it.
    no_worker = lambda: re.search(r"^rerank_workers_alive 0\.0$", httpx.get(f"{stack.url}/metrics").text, re.M)  # noqa: E731
    wait_until(lambda: no_worker() is not None, 10, "the API's monitor to drop the worker")
    started = time.monotonic()
    assert_error(stack.rerank(SEED_QUERY, SEED_CANDIDATES), 503, "no_worker")
    assert time.monotonic() - started < 1
    health = httpx.get(f"{stack.url}/health", timeout=5)
    assert (health.status_code, health.json()["status"]) == (503, "no_worker")
    assert sorted(health.json()["unreadable_workers"]) == sorted(GARBAGE)

    log = stack.api.log()
    for name in GARBAGE:  # logged once each, not once per refresh
        assert log.count(f"ignoring worker record rerank:worker:{name}:") == 1, log[-3000:]
