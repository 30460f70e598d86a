"""``python -m bench --backends torch,onnx,onnx-int8,openvino``: the model runtimes side by side, in one run.

For each backend (RERANK_BACKEND, and its variant for ``onnx-int8``): its raw ceiling (the worker's own
``Reranker.score_many`` in this process, at its best micro-batch, no HTTP, no queue) and this service's
throughput at concurrency 32 on it (a real redis-server, API and worker per backend), plus infinity-emb (torch
engine) on the same model. Every service stays up and they take turns, round after round, with the ceilings
measured in turn with them, so the machine's drift falls on all alike. Scores of each backend are compared with
torch's on the same requests (largest difference, top-1, Kendall tau: :mod:`rerank_server.agreement`).
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack
from pathlib import Path

from bench import load
from bench.systems import Setup, System, infinity, rss_mb, service
from bench.workload import Workload
from rerank_server import agreement

#: A backend as the bench names it: (RERANK_BACKEND, RERANK_BACKEND_VARIANT).
CHOICES = {
    "torch": ("torch", "optimized"),
    "onnx": ("onnx", "optimized"),
    "onnx-int8": ("onnx", "int8"),
    "openvino": ("openvino", "optimized"),
}
#: The micro-batches tried for each backend's ceiling (the best on 2-core CPUs was 16 for torch).
BATCH_SIZES = (16, 32)
CONCURRENCY = 32
CANDIDATES = 16


def _runtime(setup: Setup, name: str):
    from rerank_worker.runtime import Reranker

    backend, variant = CHOICES[name]
    return Reranker(
        str(setup.model_dir), device="cpu", batch_size=BATCH_SIZES[0], max_length=None, backend=backend,
        backend_variant=variant,
    )  # fmt: skip


def _rate(runtime, requests: list[tuple[str, list[str]]]) -> tuple[float, list[list[float]]]:
    from rerank_contract.jobs import ScoreMode

    started = time.perf_counter()
    scores = runtime.score_many(requests, ScoreMode.ACTIVATED).scores
    return sum(len(c) for _, c in requests) / (time.perf_counter() - started), scores


def run(names: list[str], setup: Setup, logs: Path, *, with_infinity: bool, quick: bool) -> list[str]:
    """The markdown section: per backend its ceiling, its service at concurrency 32, ratios and score agreement."""
    workload = Workload()
    requests = [workload.request(CANDIDATES) for _ in range(16 if quick else 32)]
    runtimes = {name: _runtime(setup, name) for name in names}  # exports what is missing, before any timing
    best: dict[str, int] = {}
    scores: dict[str, list[list[float]]] = {}
    for name, runtime in runtimes.items():
        _rate(runtime, requests[:2])  # warm-up
        rates = {}
        for size in BATCH_SIZES:
            runtime.batch_size = size
            rates[size], scores[name] = _rate(runtime, requests)
        best[name] = max(rates, key=rates.__getitem__)
        runtime.batch_size = best[name]
    ceilings: dict[str, list[float]] = {name: [] for name in names}
    rounds = 1 if quick else 3
    with ExitStack() as stack:
        systems: dict[str, System] = {}
        for name in names:
            backend, variant = CHOICES[name]
            # a slow backend's queue at concurrency 32 may pass the default 30 s wait on a busy 2-core machine: a
            # 504 would be counted as an error and its pairs lost from the rate, so the wait is the client's (120 s)
            env = {"RERANK_BACKEND": backend, "RERANK_BACKEND_VARIANT": variant, "RERANK_REQUEST_TIMEOUT_S": "120"}
            (logs / name).mkdir(parents=True, exist_ok=True)
            systems[name] = stack.enter_context(service(setup, best[name], logs / name, env))
        peer = stack.enter_context(infinity(setup, best.get("torch", 16), logs)) if with_infinity else None
        if peer is not None:
            systems["infinity-emb"] = peer
        for system in systems.values():  # warm-up, as load.run's own first calls
            load.run(system.url, system.body, workload, size=CANDIDATES, concurrency=4, requests=8)
        for _ in range(rounds):
            for name, runtime in runtimes.items():
                ceilings[name].append(_rate(runtime, requests)[0])
            for system in systems.values():
                run = load.run(
                    system.url, system.body, workload, size=CANDIDATES, concurrency=CONCURRENCY,
                    requests=CONCURRENCY * 2,
                )  # fmt: skip
                system.throughput[CONCURRENCY] = (
                    load.combine(system.throughput[CONCURRENCY], run) if CONCURRENCY in system.throughput else run
                )
        for system in systems.values():
            system.rss = {k: rss_mb(pid) for k, pid in system.pids.items()}
    return _section(names, systems, ceilings, best, scores, peer)


def _section(
    names: list[str],
    systems: dict[str, System],
    ceilings: dict[str, list[float]],
    best: dict[str, int],
    scores: dict[str, list[list[float]]],
    peer: System | None,
) -> list[str]:
    raw = {name: statistics.mean(values) for name, values in ceilings.items()}
    served = {name: system.throughput[CONCURRENCY].pairs_per_s for name, system in systems.items()}
    base = "torch" if "torch" in names else names[0]
    lines = [
        f"## Backends: raw ceiling and service throughput at concurrency {CONCURRENCY}, {CANDIDATES} candidates",
        "",
        f"Raw: the worker's `Reranker.score_many` in the bench process at the backend's best micro-batch (of "
        f"{', '.join(map(str, BATCH_SIZES))}), mean of {len(next(iter(ceilings.values())))} turns taken with the "
        f"services. Service: a redis-server, API and worker per backend, in turn with the others. x torch: against "
        f"`{base}` in this run.",
        "",
        "| backend | micro-batch | raw pairs/s | x torch raw | service pairs/s | p99 ms | errors | x torch service "
        "| service / own raw | x infinity-emb | worker RSS MB | max score diff vs torch | top-1 same | Kendall tau "
        "mean (lowest) |",
        "|" + "---|" * 14,
    ]
    for name in names:
        run = systems[name].throughput[CONCURRENCY]
        found = agreement.compare(scores[name], scores[base])
        taus = f"{statistics.fmean(found.taus):.3f} ({min(found.taus):.3f})" if found.taus else "n/a"
        versus_peer = f"{served[name] / served['infinity-emb']:.2f}" if peer is not None else "n/a"
        lines.append(
            f"| {name} | {best[name]} | {raw[name]:,.1f} | {raw[name] / raw[base]:.2f} | {served[name]:,.1f} | "
            f"{run.p99:,.0f} | {run.errors} | **{served[name] / served[base]:.2f}** | {served[name] / raw[name]:.2f} | "
            f"{versus_peer} | {systems[name].rss.get('worker') or 0:,.0f} | {found.max_diff:.1g} | "
            f"{found.top1_same}/{found.queries} | {taus} |"
        )
    if peer is not None:
        run = peer.throughput[CONCURRENCY]
        lines.append(
            f"| infinity-emb 0.0.78 (torch engine) | | | | {served['infinity-emb']:,.1f} | {run.p99:,.0f} | "
            f"{run.errors} | {served['infinity-emb'] / served[base]:.2f} | | 1.00 | "
            f"{peer.rss.get('server') or 0:,.0f} | | | |"
        )
    lines.append("")
    fp32 = [n for n in names if n != base and CHOICES[n][1] != "int8"]
    if fp32:
        top = max(fp32, key=served.__getitem__)
        lines.append(
            f"Best float32 backend, **{top}**: **{served[top] / served[base]:.2f}x** this service on torch "
            f"(target >= 1.25; its raw gain {raw[top] / raw[base]:.2f}x)"
            + (f", **{served[top] / served['infinity-emb']:.2f}x** infinity-emb (target >= 1.4)" if peer else "")
            + "."
        )
    for name in (n for n in names if CHOICES[n][1] == "int8"):
        lines.append(
            f"**{name}**: **{served[name] / served[base]:.2f}x** torch's service (target >= 1.5; raw "
            f"{raw[name] / raw[base]:.2f}x); its scores against torch's are in the table (measured, not asserted)."
        )
    lines.append("")
    return lines
