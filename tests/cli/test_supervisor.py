"""``up``'s supervisor on fake processes and a fake clock: restarts, backoff, counting, and when it gives up."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from itertools import count
from pathlib import Path

import pytest

from rerank_contract import defaults
from rerank_server.supervisor import Child, GiveUp, Supervisor
from tests.support.waiting import wait_until

PIDS = count(100)


class FakeProcess:
    def __init__(self) -> None:
        self.pid = next(PIDS)
        self.returncode: int | None = None
        self.terminated = False

    def exit(self, code: int) -> None:
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.terminated = True
        self.returncode = 0

    def kill(self) -> None:
        self.returncode = -9

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None
        return self.returncode


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Launcher:
    """A child's start function that records every process it started; ``fail`` makes the next start raise."""

    def __init__(self) -> None:
        self.started: list[FakeProcess] = []
        self.fail = False

    def __call__(self) -> FakeProcess:
        if self.fail:
            raise RuntimeError("port in use")
        self.started.append(FakeProcess())
        return self.started[-1]


def supervised(*names: str) -> tuple[Supervisor, dict[str, Launcher], Clock]:
    clock = Clock()
    launchers = {name: Launcher() for name in names}
    children = [Child(name, launchers[name], stop_timeout=1) for name in names]
    supervisor = Supervisor(children, backoff_s=1, backoff_cap_s=8, stable_s=60, max_quick_exits=5, clock=clock)
    supervisor.start_all()
    return supervisor, launchers, clock


def advance(supervisor: Supervisor, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    supervisor.check()


def test_a_crashed_child_is_restarted_after_a_backoff_that_doubles_while_it_keeps_crashing(caplog) -> None:
    supervisor, launchers, clock = supervised("redis", "worker", "api")
    worker = launchers["worker"]
    delays = []
    with caplog.at_level(logging.INFO, logger="rerank_server.up"):
        for _ in range(4):
            worker.started[-1].exit(-9)
            advance(supervisor, clock, 5)  # it ran 5 s: a quick exit
            before = len(worker.started)
            waited = 0
            while len(worker.started) == before:
                advance(supervisor, clock, 0.5)
                waited += 0.5
            delays.append(waited)
    assert delays == [1, 2, 4, 8]
    assert supervisor.children[1].restarts == 4
    assert [len(launchers[name].started) for name in ("redis", "api")] == [1, 1]  # the others untouched
    assert "worker exited with code -9 after 5 s: restarting it in 1 s (restart 1)" in caplog.text
    assert f"worker restarted (pid {worker.started[-1].pid}; restart 4)" in caplog.text


def test_a_child_that_ran_a_while_starts_the_backoff_over() -> None:
    supervisor, launchers, clock = supervised("worker")
    worker = launchers["worker"]
    for _ in range(3):
        worker.started[-1].exit(1)
        advance(supervisor, clock, 1)
        advance(supervisor, clock, 10)  # past any backoff so far
    assert supervisor.children[0].quick_exits == 3
    advance(supervisor, clock, 61)  # then a long, healthy run
    worker.started[-1].exit(1)
    advance(supervisor, clock, 0)
    assert supervisor.children[0].quick_exits == 1
    assert supervisor.children[0].restart_at == clock.now + 1


def test_a_child_that_exits_0_by_itself_is_replaced_at_once_and_not_counted_as_failing() -> None:
    supervisor, launchers, clock = supervised("worker")
    for _ in range(10):  # more than max_quick_exits: a worker retiring after N jobs is not a crash loop
        launchers["worker"].started[-1].exit(0)
        advance(supervisor, clock, 2)
    assert len(launchers["worker"].started) == 11
    assert supervisor.children[0].quick_exits == 0


def test_exit_code_3_stops_the_service_without_a_restart() -> None:
    supervisor, launchers, clock = supervised("worker", "api")
    launchers["worker"].started[0].exit(defaults.EXIT_STARTUP_FAILED)
    with pytest.raises(GiveUp, match="worker exited with code 3: it cannot start"):
        advance(supervisor, clock, 0.2)
    supervisor.stop_all()
    assert len(launchers["worker"].started) == 1
    assert launchers["api"].started[0].terminated


def test_quick_exits_in_a_row_stop_the_service_with_the_count_and_the_last_code() -> None:
    supervisor, launchers, clock = supervised("api")
    with pytest.raises(GiveUp, match=r"api keeps failing: it exited 5 times in a row within 60 s .*last exit code 1"):
        for _ in range(5):
            launchers["api"].started[-1].exit(1)
            advance(supervisor, clock, 1)
            advance(supervisor, clock, 30)
    assert len(launchers["api"].started) == 5


def test_a_restart_that_cannot_start_counts_as_a_quick_exit_and_is_tried_again(caplog) -> None:
    supervisor, launchers, clock = supervised("redis")
    redis = launchers["redis"]
    redis.started[0].exit(-9)
    redis.fail = True
    with caplog.at_level(logging.INFO, logger="rerank_server.up"):
        advance(supervisor, clock, 100)  # exit noticed and, with the 1 s backoff, ...
        advance(supervisor, clock, 1)  # ... the restart is tried: it raises
    assert "redis did not start again: port in use" in caplog.text
    assert supervisor.children[0].quick_exits == 2
    redis.fail = False
    advance(supervisor, clock, 2)
    assert len(redis.started) == 2 and supervisor.children[0].proc is redis.started[1]


def test_a_first_start_that_fails_is_not_retried() -> None:
    launcher = Launcher()
    launcher.fail = True
    supervisor = Supervisor([Child("redis", launcher, stop_timeout=1)])
    with pytest.raises(GiveUp, match="redis cannot start: port in use"):
        supervisor.start_all()


def test_stop_all_stops_in_reverse_order_and_reports_the_restarts(caplog) -> None:
    supervisor, launchers, clock = supervised("redis", "worker", "api")
    launchers["worker"].started[0].exit(-9)
    advance(supervisor, clock, 100)
    advance(supervisor, clock, 1)
    order = []
    for name, launcher in launchers.items():
        proc = launcher.started[-1]
        proc.terminate = lambda name=name, proc=proc: (order.append(name), setattr(proc, "returncode", 0))  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="rerank_server.up"):
        supervisor.stop_all()
    assert order == ["api", "worker", "redis"]
    assert "restarts while running: worker 1" in caplog.text


# --- process groups: real processes, as `up` starts them ----------------------------------------------

#: A leader that starts a grandchild in its own group (as uvicorn starts the API's processes), prints the
#: grandchild's pid, then waits for SIGTERM (``stay``) or exits at once with code 1 (as if killed).
LEADER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leaves without stopping the grandchild
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print(grandchild.pid, flush=True)
if sys.argv[1] == "stay":
    time.sleep(300)
sys.exit(1)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"  # killed, waiting for init to reap it


def _group_leader(mode: str, grandchildren: list[int]) -> Callable[[], subprocess.Popen[str]]:
    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", LEADER, mode], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert proc.stdout is not None
        grandchildren.append(int(proc.stdout.readline()))
        return proc

    return start


def test_a_child_that_exits_takes_what_is_left_of_its_group_with_it(caplog) -> None:
    grandchildren: list[int] = []
    child = Child("api", _group_leader("exit", grandchildren), stop_timeout=5, own_group=True)
    supervisor = Supervisor([child], backoff_s=60, stable_s=60)
    supervisor.start_all()
    assert child.proc is not None
    child.proc.wait(30)
    try:
        with caplog.at_level(logging.WARNING, logger="rerank_server.up"):
            supervisor.check()
        wait_until(lambda: _gone(grandchildren[0]), 10, "the orphan to be killed")
        assert "api exited and left processes of its group behind: killing them" in caplog.text
    finally:
        for pid in grandchildren:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_stop_all_leaves_nothing_of_a_childs_group_behind() -> None:
    grandchildren: list[int] = []
    child = Child("api", _group_leader("stay", grandchildren), stop_timeout=30, own_group=True)
    supervisor = Supervisor([child])
    supervisor.start_all()
    try:
        supervisor.stop_all()
        assert child.proc is not None and child.proc.returncode == 0
        wait_until(lambda: _gone(grandchildren[0]), 10, "the grandchild to be killed")
    finally:
        for pid in grandchildren:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_child_without_a_group_of_its_own_is_only_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake pids must never reach killpg: only children started in a session of their own are groups."""
    monkeypatch.setattr(os, "killpg", lambda *args: pytest.fail(f"killpg{args}"))
    supervisor, launchers, clock = supervised("worker")
    launchers["worker"].started[0].exit(1)
    advance(supervisor, clock, 1)
    supervisor.stop_all()
