"""How every Redis this project starts keeps its data: an append-only file, fsynced every second.

One table for ``up``'s private redis-server (command-line flags), the launchd ``redis.conf`` and (by
hand, checked by tests/deploy/test_compose.py) the Compose stack. With it a clean stop loses nothing, a killed
redis-server loses nothing it acknowledged (its writes are already in the OS's page cache), and a power
cut or kernel crash loses at most about the last second of writes.
"""

from __future__ import annotations

from pathlib import Path

#: redis.conf directives, in order. No RDB snapshots: the AOF (with its own compacted base) is the copy.
PERSISTENCE = (("appendonly", "yes"), ("appendfsync", "everysec"), ("save", '""'))


def data_dir(setting: str, home: Path | None = None) -> Path:
    """``RERANK_REDIS_DIR`` as a path; a leading ``~`` is ``home`` (the launchd layout's) or the user's own."""
    if setting == "~" or setting.startswith("~/"):
        return (home or Path.home()) / setting[2:]
    return Path(setting).expanduser()


def command_line(folder: Path) -> list[str]:
    """redis-server flags that persist into ``folder`` (which must exist)."""
    args = ["--dir", str(folder)]
    for name, value in PERSISTENCE:
        args += [f"--{name}", "" if value == '""' else value]
    return args


def conf_lines(folder: Path) -> list[str]:
    """The same as redis.conf lines; the folder is quoted, so a path with spaces works."""
    quoted = str(folder).replace("\\", "\\\\").replace('"', '\\"')
    return [f'dir "{quoted}"', *(f"{name} {value}" for name, value in PERSISTENCE)]
