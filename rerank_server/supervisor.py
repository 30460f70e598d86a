"""Keep child processes running, as a process manager would: ``up``'s Redis, worker and API.

A child that exits while nothing asked it to is started again: at once when it exited with code 0 of
its own accord (a worker retiring after its memory or job limit), otherwise after a backoff that
doubles with each exit that came soon after its start (``SUPERVISE_STABLE_S``) and starts over once a
run lasted longer. Every restart is logged and counted. The supervisor gives up, which stops the whole
service, when a child exits with :data:`EXIT_STARTUP_FAILED` (it says it cannot start: a missing model
or an unreachable Redis does not get better by looping) or exits soon after its start
``SUPERVISE_MAX_QUICK_EXITS`` times in a row.

A child that leads its own process group (``own_group``) is gone only when its group is: once it has
exited, whatever it started that is still in the group (the API's processes, when it was killed before it
could stop them) is killed, so no orphan keeps its port or its Redis connections.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from rerank_contract import defaults

log = logging.getLogger("rerank_server.up")


class Process(Protocol):
    """What is used of :class:`subprocess.Popen`."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class GiveUp(Exception):
    """A child cannot be kept running; the message says which and why."""


@dataclass
class Child:
    """One supervised process; ``start`` launches it and raises RuntimeError if it cannot."""

    name: str
    start: Callable[[], Process]
    stop_timeout: float
    proc: Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_exits: int = 0
    restart_at: float | None = None
    history: list[int | None] = field(default_factory=list)  # exit codes, None for a start that failed
    #: Started with ``start_new_session``: its pid is its process group's, killed with it once it exits.
    own_group: bool = False


@dataclass
class Supervisor:
    children: list[Child]
    backoff_s: float = defaults.SUPERVISE_BACKOFF_S
    backoff_cap_s: float = defaults.SUPERVISE_BACKOFF_CAP_S
    stable_s: float = defaults.SUPERVISE_STABLE_S
    max_quick_exits: int = defaults.SUPERVISE_MAX_QUICK_EXITS
    clock: Callable[[], float] = time.monotonic

    def start_all(self) -> None:
        """Start every child in order; a first start that fails is not retried (raises GiveUp)."""
        for child in self.children:
            try:
                self._launch(child)
            except RuntimeError as exc:
                raise GiveUp(f"{child.name} cannot start: {exc}") from exc

    def add(self, child: Child) -> None:
        """Start ``child`` now and supervise it from here on (stopped first, as the last one); GiveUp if it fails."""
        self.children.append(child)
        try:
            self._launch(child)
        except RuntimeError as exc:
            raise GiveUp(f"{child.name} cannot start: {exc}") from exc

    def check(self) -> None:
        """Notice children that exited and restart those that are due; raises GiveUp to stop the service."""
        now = self.clock()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                if child.own_group:
                    kill_group(child.proc.pid, child.name)
                self._exited(child, child.proc.returncode, now)
            if child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                child.restarts += 1
                try:
                    proc = self._launch(child)
                    log.info("%s restarted (pid %d; restart %d)", child.name, proc.pid, child.restarts)
                except RuntimeError as exc:
                    log.error("%s did not start again: %s", child.name, exc)
                    self._exited(child, None, now)

    def stop_all(self) -> None:
        """Stop the children in reverse order (the API first, Redis last), each with SIGTERM then SIGKILL."""
        for child in reversed(self.children):
            child.restart_at = None
            if child.proc is not None:
                stop(child.proc, child.name, child.stop_timeout, group=child.own_group)
        restarted = [f"{c.name} {c.restarts}" for c in self.children if c.restarts]
        if restarted:
            log.info("restarts while running: %s", ", ".join(restarted))

    def _launch(self, child: Child) -> Process:
        child.proc = None
        proc = child.proc = child.start()
        child.started_at = self.clock()
        return proc

    def _exited(self, child: Child, code: int | None, now: float) -> None:
        ran = now - child.started_at if code is not None else 0.0
        child.proc = None
        child.history.append(code)
        if code == defaults.EXIT_STARTUP_FAILED:
            raise GiveUp(
                f"{child.name} exited with code {code}: it cannot start (its log above says why); "
                "not restarting it, stopping the service"
            )
        if code == 0:
            log.info("%s exited by itself after %.0f s (code 0): starting a fresh one", child.name, ran)
            child.quick_exits = 0
            child.restart_at = now
            return
        child.quick_exits = child.quick_exits + 1 if ran < self.stable_s else 1
        if child.quick_exits >= self.max_quick_exits:
            raise GiveUp(
                f"{child.name} keeps failing: it exited {child.quick_exits} times in a row within "
                f"{self.stable_s:.0f} s of starting (last exit code {code}); stopping the service"
            )
        delay = min(self.backoff_s * 2 ** (child.quick_exits - 1), self.backoff_cap_s)
        log.error(
            "%s exited with code %s after %.0f s: restarting it in %.0f s (restart %d)",
            child.name,
            code,
            ran,
            delay,
            child.restarts + 1,
        )
        child.restart_at = now + delay


def stop(proc: Process, name: str, timeout: float = defaults.API_EXIT_TIMEOUT_S, *, group: bool = False) -> None:
    """SIGTERM once (a worker finishes its job), then SIGKILL after ``timeout`` seconds.

    ``group``: ``proc`` leads its own process group; only it gets the SIGTERM (the API's uvicorn stops its
    own processes), and whatever of the group outlives it is killed.
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %ss: killing it", name, timeout)
            proc.kill()
            proc.wait()
    if group:
        kill_group(proc.pid, name)


def kill_group(pgid: int, name: str) -> None:
    """SIGKILL what is left of process group ``pgid`` (its leader has exited), saying so if anything was."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return  # empty: nothing was left behind
    log.warning("%s exited and left processes of its group behind: killing them", name)
    with contextlib.suppress(ProcessLookupError):  # it emptied meanwhile
        os.killpg(pgid, signal.SIGKILL)
