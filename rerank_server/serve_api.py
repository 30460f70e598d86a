"""``rerank-server api``: the HTTP API in one process, or in several on one port (``RERANK_API_PROCESSES``).

Several processes are uvicorn's own multi-process mode; each builds its own app (Redis clients, result
reader, worker monitor) from the environment's settings, and their metrics are summed through
prometheus-client's multiprocess files (:mod:`rerank_api.metrics`). Each also stops itself, gracefully,
once the process that started it is gone (:func:`exit_with_parent`).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rerank_contract.defaults import API_KEEP_ALIVE_S, PARENT_CHECK_S
from rerank_contract.settings import Settings, settings_env

#: prometheus-client's switch to its multiprocess mode (the new and the deprecated spelling).
_MULTIPROC_VARS = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
#: The shared metrics folder of an API: this, then the pid of the `rerank-server api` that made it.
_METRICS_DIR_PREFIX = "rerank-api-metrics-"
#: The pid of the `rerank-server api` that started a process of several: see :func:`exit_with_parent`.
_PARENT_PID_VAR = "_RERANK_API_PARENT_PID"


def serve(settings: Settings) -> None:
    """Serve the API until SIGTERM or Ctrl-C: one process, or ``settings.api_processes`` on one port."""
    import uvicorn

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "timeout_keep_alive": API_KEEP_ALIVE_S,
    }
    if settings.api_processes == 1:
        with _environment(dict.fromkeys(_MULTIPROC_VARS)):  # one process counts alone, in its own registry
            from rerank_api.app import create_app

            uvicorn.run(create_app(settings), **options)
        return
    # uvicorn's own multi-process mode: it binds the port here and starts (and restarts) that many
    # children, each importing `rerank_server:app`, which builds its app from the environment's settings;
    # so the settings given here (flags included) go into the environment they inherit, along with a
    # fresh folder for their shared metrics and this process's pid. SIGTERM or Ctrl-C here stops them all.
    _remove_dead_metrics_dirs()
    metrics_dir = tempfile.mkdtemp(prefix=f"{_METRICS_DIR_PREFIX}{os.getpid()}-")
    shared = {**settings_env(settings, only_set=True), **dict.fromkeys(_MULTIPROC_VARS)}
    shared[_MULTIPROC_VARS[0]] = metrics_dir
    shared[_PARENT_PID_VAR] = str(os.getpid())
    try:
        with _environment(shared):
            uvicorn.run("rerank_server:app", workers=settings.api_processes, **options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def exit_with_parent() -> None:
    """In a process of several (its environment names their parent), SIGTERM itself once that parent is gone.

    uvicorn's parent stops its processes on SIGTERM or Ctrl-C, but killed (SIGKILL, the OOM killer) it
    cannot, and they would go on serving its port forever (``rerank-server up`` kills its API's process
    group, a plain ``rerank-server api`` has no one to). So a daemon thread looks once a second whether the
    process is still its parent's child (``os.getppid()``; an orphan gets a new parent) and, when not, sends
    it SIGTERM: uvicorn's own graceful stop, which finishes the requests in hand and runs the app's
    shutdown (its handler is in place already: uvicorn installs it before it imports the app). Polling,
    because Linux's ``prctl(PR_SET_PDEATHSIG)`` has no macOS equivalent; the pid comes from the
    environment, not from ``os.getppid()`` here, so a parent that died before this ran counts too.
    """
    parent = os.environ.get(_PARENT_PID_VAR)
    if parent is None:
        return

    def watch(parent: int) -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, args=(int(parent),), name="exit-with-parent", daemon=True).start()


def _remove_dead_metrics_dirs() -> None:
    """Remove the metrics folders of APIs that were killed before they could (SIGKILL, a power cut)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_METRICS_DIR_PREFIX}*-*"):
        pid = folder.name.removeprefix(_METRICS_DIR_PREFIX).partition("-")[0]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid():
                continue  # not one of ours
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # its API is alive (PermissionError: someone else's process), or the folder just went


@contextmanager
def _environment(changes: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``changes`` (None: unset) for the block, restored after it."""
    saved = {name: os.environ.get(name) for name in changes}

    def apply(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(changes)
    try:
        yield
    finally:
        apply(saved)
