"""What a client container does with a remote rerank server: one HTTP call, then bulk jobs enqueued on Redis.

Reads ``RERANK_URL`` (the API) and ``RERANK_REDIS_URL`` (the server's Redis, with its password). It needs
only ``httpx``, ``redis`` and ``rq``, not this project. Used by compose/client.example.yaml.
"""

from __future__ import annotations

import os

import httpx
from redis import Redis
from rq import Queue

QUERY = "machine learning"
CANDIDATES = ["deep learning", "cooking recipes", "neural networks"]
WAIT_S = 120


def main() -> None:
    url = os.environ["RERANK_URL"]
    health = httpx.get(f"{url}/health", timeout=10).json()
    print(f"health: {health['status']}, {health.get('workers_alive', 0)} worker(s), device {health.get('device')}")

    response = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "candidates": CANDIDATES}, timeout=60)
    response.raise_for_status()
    print("http:", [(r["index"], round(r["score"], 3)) for r in response.json()["results"]])

    # A blocking wait needs a socket timeout longer than the wait (redis-py's default is 5 s).
    redis = Redis.from_url(os.environ["RERANK_REDIS_URL"], socket_timeout=WAIT_S + 10)
    queue = Queue("rerank-bulk", connection=redis, serializer="rq.serializers.JSONSerializer")
    jobs = queue.enqueue_many(
        [
            Queue.prepare_data(
                "rerank_worker.jobs.rerank", args=({"query": q, "candidates": CANDIDATES},), result_ttl=3600
            )
            for q in (QUERY, "cooking")
        ]
    )
    for job in jobs:
        result = job.latest_result(timeout=WAIT_S)
        if result is None or result.type != result.Type.SUCCESSFUL:
            raise SystemExit(f"bulk job {job.id} did not succeed: {result.exc_string if result else 'no result'}")
        print(f"bulk {job.id}:", [r["index"] for r in result.return_value["results"]])


if __name__ == "__main__":
    main()
