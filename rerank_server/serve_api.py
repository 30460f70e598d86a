"""``rerank-server api``: the HTTP API in one process, or in several on one port (``RERANK_API_PROCESSES``).

Several processes are uvicorn's own multi-process mode; each builds its own app (Redis clients, result
reader, worker monitor) from the environment's settings, and their metrics are summed through
prometheus-client's multiprocess files (:mod:`rerank_api.metrics`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rerank_contract.settings import Settings, settings_env

#: prometheus-client's switch to its multiprocess mode (the new and the deprecated spelling).
_MULTIPROC_VARS = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
#: The shared metrics folder of an API: this, then the pid of the `rerank-server api` that made it.
_METRICS_DIR_PREFIX = "rerank-api-metrics-"


def serve(settings: Settings) -> None:
    """Serve the API until SIGTERM or Ctrl-C: one process, or ``settings.api_processes`` on one port."""
    import uvicorn

    options = {"host": settings.host, "port": settings.port, "log_level": settings.log_level.lower()}
    if settings.api_processes == 1:
        with _environment(dict.fromkeys(_MULTIPROC_VARS)):  # one process counts alone, in its own registry
            from rerank_api.app import create_app

            uvicorn.run(create_app(settings), **options)
        return
    # uvicorn's own multi-process mode: it binds the port here and starts (and restarts) that many
    # children, each importing `rerank_server:app`, which builds its app from the environment's settings;
    # so the settings given here (flags included) go into the environment they inherit, along with a
    # fresh folder for their shared metrics. SIGTERM or Ctrl-C here stops them all.
    _remove_dead_metrics_dirs()
    metrics_dir = tempfile.mkdtemp(prefix=f"{_METRICS_DIR_PREFIX}{os.getpid()}-")
    shared = {**settings_env(settings, only_set=True), **dict.fromkeys(_MULTIPROC_VARS)}
    shared[_MULTIPROC_VARS[0]] = metrics_dir
    try:
        with _environment(shared):
            uvicorn.run("rerank_server:app", workers=settings.api_processes, **options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


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
