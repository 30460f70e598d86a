"""``RERANK_API_PROCESSES``: several API processes on one port, one view in ``/metrics``, no orphans when stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from rerank_contract.jobs import ScoreMode
from tests.conftest import CLI, Service, Stack, free_port, service_env, wait_until

pytestmark = pytest.mark.e2e

WORDS = ["machine", "learning", "cooking", "recipes", "neural", "networks", "garden", "music"]


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError):
            continue
        if int(ppid) == pid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def api_processes(pid: int) -> list[int]:
    """uvicorn's serving children of ``pid`` (not multiprocessing's resource tracker)."""
    return [c for c in children(pid) if b"spawn_main" in _read(f"/proc/{c}/cmdline")]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def environ(pid: int) -> dict[str, str]:
    pairs = (item.decode().partition("=") for item in _read(f"/proc/{pid}/environ").split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def gone(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return not stat or stat.rsplit(b")", 1)[1].split()[0] == b"Z"


def answered_by(folder: Path, pid: int) -> float:
    """The rerank calls process ``pid`` answered, read from its own counter file in the shared folder."""
    file = folder / f"counter_{pid}.db"
    if not file.exists():
        return 0.0
    return sum(
        s.value
        for family in MultiProcessCollector.merge([str(file)])
        for s in family.samples
        if s.name == "rerank_http_requests_total" and s.labels.get("route") == "/v1/rerank"
    )


def rerank_total(url: str) -> tuple[float, float]:
    """``rerank_http_requests_total`` of the rerank route (status 200), and live workers, from one scrape."""
    with httpx.Client() as client:  # a connection of its own: whichever process accepts it answers
        text = client.get(f"{url}/metrics", timeout=10).text
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    ok = (("method", "POST"), ("route", "/v1/rerank"), ("status", "200"))
    return got.get(("rerank_http_requests_total", ok), 0.0), got.get(("rerank_workers_alive", ()), 0.0)


def test_two_api_processes_share_the_port_and_metrics_and_leave_nothing_behind(make_stack, tmp_path) -> None:
    from rerank_worker.fake_scorer import FakeScorer

    stack: Stack = make_stack(SCORER="fake", MODEL="/no/such/model")
    # The API's settings come as flags only: its children must get them through the environment.
    env = {k: v for k, v in stack.env.items() if k not in ("RERANK_REDIS_URL", "RERANK_PORT")}
    args = ["--api-processes", "2", "--redis-url", stack.redis_url, "--port", str(stack.port)]
    stack.api = Service([*CLI, "api", *args], env, tmp_path / "api.log").start()
    wait_until(stack._api_up, 60, "API to answer")
    stack.start_worker()
    assert stack.api.proc is not None
    parent = stack.api.proc.pid
    wait_until(lambda: len(api_processes(parent)) == 2, 60, "two API processes")
    pids = api_processes(parent)
    everything = children(parent)  # the resource tracker too
    folder = Path(environ(pids[0])["PROMETHEUS_MULTIPROC_DIR"])  # where the processes count
    assert folder.is_dir()

    scorer = FakeScorer()

    def call(n: int) -> None:
        query = f"{WORDS[n % len(WORDS)]} {WORDS[(n * 3 + 1) % len(WORDS)]}"
        candidates = [f"{WORDS[(n + i) % len(WORDS)]} {WORDS[(n * i) % len(WORDS)]}" for i in range(5)]
        response = httpx.post(f"{stack.url}/v1/rerank", json={"query": query, "candidates": candidates}, timeout=30)
        assert response.status_code == 200, response.text
        (want,) = scorer.score_many([(query, candidates)], ScoreMode.ACTIVATED).scores
        got = {r["index"]: r["score"] for r in response.json()["results"]}
        assert got == pytest.approx(dict(enumerate(want)))

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        # Bursts of concurrent calls, each on a connection of its own, until both processes have answered some.
        for _ in range(30):
            list(pool.map(call, range(sent, sent + 16)))
            sent += 16
            if all(answered_by(folder, pid) > 0 for pid in pids):
                break
    assert all(answered_by(folder, pid) > 0 for pid in pids), [answered_by(folder, pid) for pid in pids]

    # Each process counts a request once it has sent the answer: wait for the last count, then every
    # scrape, whichever process answers it, says the same.
    wait_until(lambda: rerank_total(stack.url)[0] == sent, 30, f"/metrics to count {sent} calls")
    for _ in range(8):
        assert rerank_total(stack.url) == (sent, 1)
    assert httpx.get(f"{stack.url}/v1/status", timeout=10).json()["rerank_requests"] == sent

    assert stack.api.stop() == 0
    wait_until(lambda: all(gone(pid) for pid in everything), 10, "every API process to be gone")
    assert not folder.exists()  # the shared metrics folder is removed at exit
    log = stack.api.log()
    for pid in pids:
        assert f"Finished server process [{pid}]" in log  # each stopped gracefully, not killed


def test_the_processes_of_a_killed_api_stop_by_themselves(make_stack, tmp_path) -> None:
    from rerank_server.serve_api import _remove_dead_metrics_dirs

    stack: Stack = make_stack(SCORER="fake", MODEL="/no/such/model", API_PROCESSES="2")
    stack.api = Service([*CLI, "api"], stack.env, tmp_path / "api.log").start()
    wait_until(stack._api_up, 60, "API to answer")
    assert stack.api.proc is not None
    parent = stack.api.proc.pid
    wait_until(lambda: len(api_processes(parent)) == 2, 60, "two API processes")
    pids = api_processes(parent)
    everything = children(parent)  # the resource tracker too
    folder = Path(environ(pids[0])["PROMETHEUS_MULTIPROC_DIR"])
    stack.api.signal(signal.SIGKILL)  # no `up` here to kill what it leaves behind: they must see to it
    assert stack.api.proc.wait(5) == -signal.SIGKILL  # reaped, as a shell would: its pid is no one's now
    try:
        wait_until(lambda: all(gone(pid) for pid in everything), 5, "the killed API's processes to stop")
    finally:  # orphans that did not stop would serve their port for good
        for pid in everything:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
    log = stack.api.log()
    for pid in pids:
        assert f"Finished server process [{pid}]" in log  # each stopped gracefully, not killed
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.url}/health", timeout=5)  # nothing serves the port any more
    # The killed API could not remove its metrics folder: the next one to start does.
    assert folder.is_dir()
    _remove_dead_metrics_dirs()
    assert not folder.exists()


def test_up_with_api_processes_kills_the_orphans_of_a_killed_api_and_stops_them_all(tmp_path) -> None:
    api_port, redis_port = free_port(), free_port()
    env = service_env(
        f"redis://127.0.0.1:{redis_port}/0", tmp_path, PORT=str(api_port), REDIS_DIR=str(tmp_path / "r"), SCORER="fake"
    )
    log_path = tmp_path / "up.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [*CLI, "up", "--api-processes", "2"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{api_port}"

    def api_pid() -> int:
        return [int(p) for p in re.findall(r"api (?:re)?started \(pid (\d+)", log_path.read_text())][-1]

    def serving() -> bool:
        try:
            return httpx.post(f"{url}/v1/rerank", json={"query": "a", "candidates": ["a b", "c"]}, timeout=5).is_success
        except httpx.HTTPError:
            return False

    try:
        wait_until(lambda: "is up at" in log_path.read_text(), 90, "rerank-server up to announce")
        first = api_pid()
        wait_until(lambda: len(api_processes(first)) == 2, 60, "two API processes under up")
        orphans = children(first)
        for pid in api_processes(first):  # frozen, they cannot stop by themselves (the test above): up must
            os.kill(pid, signal.SIGSTOP)
        os.kill(first, signal.SIGKILL)  # uvicorn's parent gets no chance to stop its processes
        wait_until(lambda: "api restarted" in log_path.read_text(), 60, "the API to restart")
        wait_until(lambda: all(gone(pid) for pid in orphans), 10, "the killed API's processes to be gone")
        wait_until(serving, 60, "the restarted API to serve")
        second = api_pid()
        assert second != first
        wait_until(lambda: len(api_processes(second)) == 2, 60, "two API processes again")
        left = children(second)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    wait_until(lambda: all(gone(pid) for pid in left), 10, "every API process to be gone after up stopped")
    output = log_path.read_text()
    assert "api exited and left processes of its group behind: killing them" in output
    assert "restarts while running: api 1" in output
