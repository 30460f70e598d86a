"""The deployment commands of the README and the docs name flags, options and files that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from rerank_server.cli import build_parser

ROOT = Path(__file__).parents[2]
README = "\n".join(path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))])
CODE = "\n".join(body for lang, body in re.findall(r"```(\w*)\n(.*?)```", README, re.S) if lang in ("bash", "yaml"))


def commands(prefix: str) -> list[str]:
    """Code lines running ``prefix``, without comments and with shell variables given a value."""
    found = []
    for line in CODE.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line.startswith(prefix):
            found.append(line.replace("$REDIS_PASSWORD", "pw"))
    return found


LAUNCHD_COMMANDS = commands("rerank-server launchd")
NAMED_FILES = sorted(set(re.findall(r"(?<![/\w])((?:systemd|compose|launchd)/[\w.@-]+)", README)))


def test_the_readme_shows_the_deployment_commands_and_files() -> None:
    """The parametrized tests below check what they find: an emptied README must not pass them with no cases."""
    assert {"rerank-server launchd install", "rerank-server launchd status"} <= set(LAUNCHD_COMMANDS)
    assert any("--with-redis" in line for line in LAUNCHD_COMMANDS)
    assert {"systemd/rerank-api.service", "systemd/rerank-worker@.service", "compose/compose.yaml"} <= set(NAMED_FILES)


@pytest.mark.parametrize("line", LAUNCHD_COMMANDS)
def test_launchd_commands_parse(line: str) -> None:
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert args.command == "launchd"


def test_setup_socat_options_exist() -> None:
    script = (ROOT / "setup-socat.sh").read_text()
    accepted = set(re.findall(r"^\s+(--[a-z-]+)\)", script, re.M)) | {"--help"}
    used = {token for line in commands("./setup-socat.sh") for token in shlex.split(line)[1:]}
    assert used, "the README shows no setup-socat.sh command"
    assert used <= accepted


@pytest.mark.parametrize("path", NAMED_FILES)
def test_named_files_exist(path: str) -> None:
    assert (ROOT / path.rstrip(".")).exists(), path


def test_compose_files_given_with_f_exist() -> None:
    names = set(re.findall(r"-f ([\w.-]+\.ya?ml)", CODE))
    assert names == {"compose.yaml", "compose.cuda.yaml", "compose.second-model.yaml", "client.example.yaml"}
    for name in names:
        assert (ROOT / "compose" / name).exists(), name
