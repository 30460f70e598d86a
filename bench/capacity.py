"""``python -m bench.capacity``: how many small calls per second each system serves, with ``wrk`` as the load.

A near-instant model (``models.tiny``), 4 short candidates per call, 64 concurrent connections: what is
measured is each system's own per-call path (HTTP, queue, bookkeeping), not the model. In one run, in
turn, round after round: the bare FastAPI endpoint (same route and body, constant answer: the HTTP limit
here), infinity-emb on the same model, the seed's design (the model in the API process) and this service.
``wrk`` is used because a Python load generator saturates near 140 calls/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import model_work, models
from bench.systems import Setup, System, baseline, cpu_s, infinity, process, rss_mb, seed_body, service
from bench.workload import Workload

HERE = Path(__file__).parent
CACHE = HERE / ".cache"
CONCURRENCY = 64
CANDIDATES = 4

_LUA = """
local bodies = {%s}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n %% #bodies + 1
  return wrk.format(nil, "%s", nil, bodies[n])
end
"""


@dataclass
class Capacity:
    """What ``wrk`` measured of one system, over its rounds."""

    calls_per_s: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0
    calls: int = 0
    #: CPU seconds each of the system's processes used during the measured rounds.
    cpu_s: dict[str, float] = field(default_factory=dict)

    def cpu_ms_per_call(self, name: str) -> float:
        return self.cpu_s.get(name, 0.0) * 1000 / max(1, self.calls)

    @property
    def rate(self) -> float:
        return statistics.mean(self.calls_per_s)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    """calls/s, p50 ms, p99 ms, errors (non-2xx and socket errors) and calls from ``wrk --latency`` output."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    calls = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    if socket := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(n) for n in socket.groups())
    return rate, p50, p99, errors, calls


def wrk_script(system: System, workload: Workload, folder: Path) -> Path:
    """A Lua script that POSTs 16 different bodies of this system's API in turn."""
    bodies, path = [], "/"
    for _ in range(16):
        path, body = system.body(*workload.request(CANDIDATES))
        bodies.append(json.dumps(json.dumps(body)))  # a Lua string literal is a JSON string literal here
    script = folder / f"{abs(hash(system.name))}.lua"
    script.write_text(_LUA % (", ".join(bodies), path))
    return script


def run_wrk(system: System, script: Path, seconds: float, threads: int = 2) -> tuple[float, float, float, int, int]:
    args = ["wrk", f"-t{threads}", f"-c{CONCURRENCY}", f"-d{seconds:g}s", "--latency", "--timeout", "10s"]
    done = subprocess.run([*args, "-s", str(script), system.url], capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


@contextmanager
def _env(**values: str):
    """``values`` in this process's environment (which the systems' processes inherit) until the block ends."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def bare(logs: Path):
    from bench.systems import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "bench.baseline_app", "--bare", str(port)]
    with process(args, logs / "bare.log", ready_url=f"{url}/openapi.json") as proc:
        yield System("bare FastAPI endpoint (constant answer)", url, seed_body, {"server": proc.pid})


def own_work(model: Path) -> dict[str, float]:
    """:mod:`bench.model_work` in a process of its own (this one's environment: one torch thread)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.model_work", str(model), str(CANDIDATES)],
        capture_output=True, text=True, check=True, cwd=HERE.parent,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(
    systems: list[System], *, rounds: int, seconds: float, model: Path | None = None
) -> tuple[dict[str, Capacity], list[float]]:
    """Every system in turn, ``rounds`` times, ``seconds`` each (after a short warm-up of each); with ``model``,
    its own CPU ms per call (:func:`own_work`) measured in each round too, in turn with the systems."""
    workload = Workload()
    results = {s.name: Capacity() for s in systems}
    model_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {s.name: wrk_script(s, workload, Path(tmp)) for s in systems}
        for system in systems:
            run_wrk(system, scripts[system.name], 2)
        for _ in range(rounds):
            for system in systems:
                before = {name: cpu_s(pid) for name, pid in system.pids.items()}
                rate, p50, p99, errors, calls = run_wrk(system, scripts[system.name], seconds)
                got = results[system.name]
                for name, pid in system.pids.items():
                    got.cpu_s[name] = got.cpu_s.get(name, 0.0) + cpu_s(pid) - before[name]
                got.calls_per_s.append(rate)
                got.p50_ms.append(p50)
                got.p99_ms.append(p99)
                got.errors += errors
                got.calls += calls
            if model is not None:
                model_ms.append(own_work(model)["ms_per_call"])
    return results, model_ms


def report_lines(
    systems: list[System], results: dict[str, Capacity], rounds: int, seconds: float, model_ms: list[float]
) -> list[str]:
    """The markdown section: a table with ratios against the bare endpoint and infinity-emb, the targets, and
    the bound that the model's own work sets on any server of it."""
    by_name = {s.name: s for s in systems}
    limit = next((results[s.name].rate for s in systems if s.name.startswith("bare")), None)
    peer = next((results[s.name].rate for s in systems if s.name.startswith("infinity")), None)
    bare_ms = next((results[s.name].cpu_ms_per_call("server") for s in systems if s.name.startswith("bare")), 0.0)
    lines = [
        f"## Capacity: concurrency {CONCURRENCY}, {CANDIDATES} candidates per call, near-instant model, wrk", "",
        f"{rounds} rounds of {seconds:g} s per system, in turn; calls/s is the mean of the rounds, p50 the median"
        " of the rounds' p50s, p99 the worst round's. CPU ms per call: CPU time of the system's processes during"
        " the rounds over the calls served (steadier than calls/s on a shared machine).", "",
        "| system | calls/s | p50 ms | p99 ms | calls | errors | x bare endpoint | x infinity-emb | CPU ms/call"
        " | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, got in results.items():
        vs_limit = f"{got.rate / limit:.2f}" if limit else ""
        vs_peer = f"{got.rate / peer:.2f}" if peer else ""
        pids = by_name[name].pids
        rss = " + ".join(f"{rss_mb(pid) or 0:.0f}" for pid in pids.values())
        cpu = " + ".join(f"{got.cpu_ms_per_call(process):.2f}" for process in pids)
        lines.append(
            f"| {name} | {got.rate:,.0f} | {statistics.median(got.p50_ms):,.1f} | {max(got.p99_ms):,.1f} "
            f"| {got.calls:,} | {got.errors} | {vs_limit} | {vs_peer} | {cpu} ({'+'.join(pids)}) | {rss} |"
        )
    ours = results.get("rerank-server")
    if ours is not None:
        lines.append("")
        if limit:
            lines.append(f"rerank-server: **{ours.rate / limit:.2f}x** the bare endpoint (target >= 0.3),")
        if peer:
            lines.append(f"**{ours.rate / peer:.2f}x** infinity-emb (target >= 2.0),")
        lines.append(f"{ours.errors} errors (target 0).")
    if model_ms:
        work = statistics.mean(model_ms)
        cores = os.cpu_count() or 1
        bound = cores * 1000 / (work + bare_ms)
        peers = (("infinity-emb", peer), ("the bare endpoint", limit))
        ratios = ", ".join(f"{bound / rate:.2f}x {what}" for what, rate in peers if rate)
        lines += [
            "",
            f"**The model's own work bounds every system here**: `CrossEncoder.predict` alone, on the pairs of "
            f"{model_work.CALLS} calls at its best micro-batch, took {work:.2f} ms of CPU per call (mean of "
            f"{len(model_ms)}, one per round, in turn with the systems); with one HTTP answer at the bare endpoint's "
            f"{bare_ms:.2f} ms, {cores} cores serve at most **{bound:,.0f} calls/s** = {ratios}, before any queue, "
            "wrk's own CPU or bookkeeping.",
        ]
    lines.append(
        "All model-running systems ran with one torch thread (`OMP_NUM_THREADS=1`); wrk ran on the same machine."
    )
    return [*lines, ""]


def run(logs: Path, *, with_infinity: bool, quick: bool, extra_env: dict[str, str] | None = None) -> list[str]:
    """Start the systems on the tiny model, measure them, stop them; the report section's lines."""
    if shutil.which("wrk") is None:
        return ["## Capacity", "", "Skipped: `wrk` is not installed (`apt install wrk` / `brew install wrk`).", ""]
    setup = Setup(models.tiny(CACHE / "tiny-cross-encoder"), "cpu", "float32")
    rounds, seconds = (1, 5.0) if quick else (3, 10.0)
    with ExitStack() as stack:
        # One torch thread in every system that runs the model: the tiny model needs no intra-op parallelism, and
        # two threads on two shared cores spin-wait for each other (256 tiny pairs took 1.27 s instead of 0.12 s).
        stack.enter_context(_env(OMP_NUM_THREADS="1"))
        systems = [stack.enter_context(bare(logs))]
        if with_infinity and (peer := stack.enter_context(infinity(setup, 32, logs))) is not None:
            systems.append(peer)
        systems.append(stack.enter_context(baseline(setup, logs)))
        systems.append(stack.enter_context(service(setup, 32, logs, extra_env)))
        results, model_ms = measure(systems, rounds=rounds, seconds=seconds, model=setup.model_dir)
        return report_lines(systems, results, rounds, seconds, model_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round: a smoke run, not for the record")
    parser.add_argument("--no-infinity", action="store_true", help="skip infinity-emb")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the service (A/B runs)")
    parser.add_argument("--report", type=Path, default=HERE / "results" / "capacity.md")
    args = parser.parse_args(argv)
    logs = HERE / "results" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    extra = dict(item.split("=", 1) for item in args.env)
    lines = run(logs, with_infinity=not args.no_infinity, quick=args.quick, extra_env=extra)
    print("\n".join(lines))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
