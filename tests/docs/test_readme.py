"""The README and the docs stay true: every setting documented with its default, every command they name exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from rerank_contract.settings import Settings
from rerank_server.cli import build_parser

ROOT = Path(__file__).parents[2]
README = "\n".join(path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))])


def _settings_hook():
    """docs/hooks/settings_table.py, the mkdocs hook that writes the settings page's table at build time."""
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "docs" / "hooks" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SETTINGS_TABLE = _settings_hook().settings_table()


def test_the_settings_page_is_made_by_the_hook() -> None:
    hook = _settings_hook()
    assert hook.SETTINGS_MARKER in (ROOT / "docs" / "settings.md").read_text()
    assert "docs/hooks/settings_table.py" in (ROOT / "mkdocs.yml").read_text()
    page = hook.on_page_markdown((ROOT / "docs" / "settings.md").read_text())
    assert hook.SETTINGS_MARKER not in page and SETTINGS_TABLE in page


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented_with_its_default(name: str) -> None:
    row = re.search(rf"^\| `RERANK_{name.upper()}` \| ([^|]+) \|", SETTINGS_TABLE, re.MULTILINE)
    assert row, f"RERANK_{name.upper()} is missing from the docs' settings table"
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
