"""mkdocs hook: the settings page's tables, made at build time from the code so they cannot drift from it.

``<!-- settings-table -->`` becomes one row per :class:`rerank_contract.settings.Settings` field (its variable,
default, the processes that read it, its description, and the reason for the default that
:mod:`rerank_contract.defaults` gives); ``<!-- fixed-values-table -->`` becomes the built-in values that are not
settings, with their reasons, as ``defaults.py`` lists them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from rerank_contract import defaults
from rerank_contract.settings import Settings

SETTINGS_MARKER = "<!-- settings-table -->"
FIXED_VALUES_MARKER = "<!-- fixed-values-table -->"


def reasons() -> dict[str, str]:
    """Each constant of ``defaults.py`` with the ``#:`` comment above it (its reason), in file order.

    A constant right below another with no comment of its own shares that one's (a pair such as a backoff's
    first step and cap).
    """
    found: dict[str, str] = {}
    comment: list[str] = []
    last = ""
    for line in Path(defaults.__file__).read_text().splitlines():
        if line.startswith("#:"):
            comment.append(line.removeprefix("#:").strip())
        elif match := re.match(r"([A-Z][A-Z0-9_]*)(?::[^=]*)? =", line):
            last = found[match.group(1)] = " ".join(comment) or last
            comment = []
        else:
            comment, last = [], ""
    return found


def _cell(text: str) -> str:
    """Text that stays inside one table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _reason(text: str) -> str:
    """A ``defaults.py`` comment as Markdown: reST ``double backticks`` become single ones."""
    return _cell(text.replace("``", "`"))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def settings_table() -> str:
    """The Markdown table of every setting: variable, default, used by, meaning and why this default."""
    why = reasons()
    prefix = Settings.model_config.get("env_prefix", "")
    rows = ["| Variable | Default | Used by | Meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or "used_by" not in extra:
            raise ValueError(f"setting {name} has no used_by in its json_schema_extra (settings._doc)")
        default = field.default
        if default is None or isinstance(default, SecretStr):
            shown = str(extra.get("default_shown", "unset"))
        else:
            shown = f"`{_value(default)}`"
        meaning = field.description or ""
        if not meaning:
            raise ValueError(f"setting {name} has no description")
        if "see_page" in extra:
            meaning += f" See [{extra['see_title']}]({extra['see_page']})."
        if reason := why.get(name.upper(), "").removeprefix("None: "):  # the Default column already says "unset"
            meaning += f" *Why this default:* {_reason(reason[0].upper() + reason[1:])}"
        rows.append(f"| `{(prefix + name).upper()}` | {shown} | {extra['used_by']} | {_cell(meaning)} |")
    return "\n".join(rows)


def fixed_values_table() -> str:
    """The built-in values that are not settings, by the part of ``defaults.py`` they are in."""
    settings = {name.upper() for name in Settings.model_fields}
    why = reasons()
    section = shown_section = ""
    out: list[str] = []
    for line in Path(defaults.__file__).read_text().splitlines():
        if heading := re.match(r"# --- (.+?) -+$", line):
            section = heading.group(1)
            continue
        match = re.match(r"([A-Z][A-Z0-9_]*)(?::[^=]*)? =", line)
        if not match or match.group(1) in settings:
            continue
        name = match.group(1)
        if section != shown_section:
            title = re.sub(r"([*_])", r"\\\1", section[0].upper() + section[1:])
            out += ["", f"### {title}", "", "| Name | Value | Why |", "|---|---|---|"]
            shown_section = section
        out.append(f"| `{name}` | `{_value(getattr(defaults, name))}` | {_reason(why.get(name, ''))} |")
    return "\n".join(out).strip()


def on_page_markdown(markdown: str, **_: object) -> str:
    """mkdocs' hook: fill in the tables where their markers are."""
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table())
    if FIXED_VALUES_MARKER in markdown:
        markdown = markdown.replace(FIXED_VALUES_MARKER, fixed_values_table())
    return markdown
