"""The README stays true: every setting documented with its default, every command it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rerank_contract.settings import Settings
from rerank_server.cli import build_parser

README = (Path(__file__).parents[2] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented_with_its_default(name: str) -> None:
    row = re.search(rf"^\| `RERANK_{name.upper()}` \| ([^|]+) \|", README, re.MULTILINE)
    assert row, f"RERANK_{name.upper()} is missing from the README's settings table"
    default = Settings.model_fields[name].default
    if default is not None:
        shown = row.group(1).strip().strip("`")
        if isinstance(default, bool | str):
            assert shown.lower() == str(default).lower(), (name, shown, default)
        else:
            assert float(shown) == default, (name, shown, default)


def test_documented_subcommands_exist() -> None:
    documented = set(re.findall(r"rerank-server (\w+)", README))
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"up", "worker", "api", "launchd"} <= documented, "the README no longer shows how to run the service"
    assert documented <= commands
