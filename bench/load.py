"""A closed-loop HTTP load generator: ``concurrency`` clients, each sending its next request when the last returns."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from bench.workload import Workload

#: Builds (path, JSON body) for one request of a system's API.
BodyFn = Callable[[str, list[str]], tuple[str, dict]]


@dataclass
class Run:
    latencies_ms: list[float]
    pairs: int
    seconds: float
    errors: int

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds


async def _run(base_url: str, body: BodyFn, workload: Workload, size: int, concurrency: int, requests: int) -> Run:
    latencies: list[float] = []
    errors = 0
    remaining = requests
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:

        async def one_client() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                path, json = body(*workload.request(size))
                started = time.perf_counter()
                try:
                    response = await client.post(path, json=json)
                    failed = response.status_code != 200
                except httpx.HTTPError:  # the server dropped the connection (or died): count it, go on
                    failed = True
                latencies.append((time.perf_counter() - started) * 1000)
                errors += failed

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Run(latencies, pairs=requests * size, seconds=seconds, errors=errors)


def combine(first: Run, second: Run) -> Run:
    """Two runs of the same measurement as one: latencies pooled, pairs and seconds added."""
    return Run(
        first.latencies_ms + second.latencies_ms,
        pairs=first.pairs + second.pairs,
        seconds=first.seconds + second.seconds,
        errors=first.errors + second.errors,
    )


def run(base_url: str, body: BodyFn, workload: Workload, *, size: int, concurrency: int, requests: int) -> Run:
    # a short warm-up at the same concurrency (at least 8 calls: first shapes are slow), not measured
    asyncio.run(_run(base_url, body, workload, size, concurrency, max(concurrency, 8)))
    return asyncio.run(_run(base_url, body, workload, size, concurrency, requests))
