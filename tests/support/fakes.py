"""Fake ``launchctl``, ``tailscale`` and ``socat`` executables that record every call.

There is no launchd here, so tests put these first on PATH. The fake launchctl keeps the loaded
agents as files in a state folder and fails like the real one does: ``bootstrap`` of a loaded label
fails (I/O error 5), ``bootout`` and ``print`` of an unknown label fail (3 and 113).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

LAUNCHCTL = r"""#!/bin/sh
echo "launchctl $*" >> "$FAKE_CALLS"
case "$1" in
  bootstrap)
    label=$(basename "$3" .plist)
    if [ -e "$FAKE_STATE/$label" ]; then echo "Bootstrap failed: 5: Input/output error" >&2; exit 5; fi
    cp "$3" "$FAKE_STATE/$label" ;;
  bootout)
    label=${2##*/}
    if [ ! -e "$FAKE_STATE/$label" ]; then echo "Boot-out failed: 3: No such process" >&2; exit 3; fi
    rm "$FAKE_STATE/$label" ;;
  print)
    label=${2##*/}
    if [ ! -e "$FAKE_STATE/$label" ]; then echo "Could not find service \"$label\" in domain" >&2; exit 113; fi
    printf '%s = {\n\tactive count = 1\n\tstate = %s\n\tpid = 4242\n' "$2" "${FAKE_STATE_NAME:-running}"
    last=${FAKE_LAST_EXIT:-"(never exited)"}
    printf "\tlast exit code = %s\n\tenvironment = {\n\t\tstate = nested\n\t}\n}\n" "$last" ;;
  *) echo "fake launchctl: unexpected $*" >&2; exit 64 ;;
esac
"""

TAILSCALE = r"""#!/bin/sh
echo "tailscale $*" >> "$FAKE_CALLS"
if [ "$1 $2" = "ip -4" ] && [ -n "$FAKE_TAILSCALE_IP" ]; then echo "$FAKE_TAILSCALE_IP"; exit 0; fi
echo "Tailscale is stopped." >&2
exit 1
"""

SOCAT = r"""#!/bin/sh
echo "socat $*" >> "$FAKE_CALLS"
"""


FAKED = ("launchctl", "tailscale", "socat")
#: What setup-socat.sh and the fakes run besides the faked tools.
SYSTEM_TOOLS = (
    "bash",
    "sh",
    "env",
    "id",
    "head",
    "sed",
    "cat",
    "mkdir",
    "sleep",
    "rm",
    "cp",
    "basename",
    "redis-server",
)


@dataclass
class Fakes:
    """The fake tools in ``bin``, their call log and launchctl's loaded agents."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def state(self) -> Path:
        return self.root / "loaded"

    @property
    def calls_file(self) -> Path:
        return self.root / "calls.log"

    def calls(self, tool: str = "") -> list[str]:
        if not self.calls_file.exists():
            return []
        return [c for c in self.calls_file.read_text().splitlines() if c.startswith(tool)]

    def clear(self) -> None:
        self.calls_file.unlink(missing_ok=True)

    def loaded(self) -> set[str]:
        return {p.name for p in self.state.iterdir()}

    def env(self, home: Path, *, tools: tuple[str, ...] = FAKED, **extra: str) -> dict[str, str]:
        """HOME set to ``home`` and PATH holding only ``tools`` (faked) and the basic system commands.

        Leaving a tool out of ``tools`` makes it missing, even where the real one is installed.
        """
        bin_dir = self.root / ("bin-" + "-".join(tools))
        if not bin_dir.exists():
            bin_dir.mkdir()
            for tool in tools:
                (bin_dir / tool).symlink_to(self.bin / tool)
            for tool in SYSTEM_TOOLS:
                found = shutil.which(tool)
                if found and tool not in FAKED:
                    (bin_dir / tool).symlink_to(found)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RERANK_", "FAKE_", "LAUNCH_AGENTS_DIR"))}
        env.update(
            PATH=str(bin_dir),
            HOME=str(home),
            FAKE_CALLS=str(self.calls_file),
            FAKE_STATE=str(self.state),
            FAKE_TAILSCALE_IP="100.101.102.103",
        )
        env.update(extra)
        return env


def make(root: Path) -> Fakes:
    fakes = Fakes(root)
    fakes.bin.mkdir(parents=True)
    fakes.state.mkdir()
    for name, script in (("launchctl", LAUNCHCTL), ("tailscale", TAILSCALE), ("socat", SOCAT)):
        path = fakes.bin / name
        path.write_text(script)
        path.chmod(0o755)
    return fakes
