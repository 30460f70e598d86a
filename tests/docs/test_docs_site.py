"""The docs site stays true to the code: the architecture page lists every module there is, and no other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
PACKAGES = ["contract/rerank_contract", "api/rerank_api", "worker/rerank_worker", "rerank_server"]


def listed(package: str) -> set[str]:
    """The modules in the table under the ``### <package>`` heading of docs/architecture.md."""
    section = re.search(rf"^### {re.escape(package)}\n(.*?)(?=^#|\Z)", ARCHITECTURE, re.M | re.S)
    assert section, f"docs/architecture.md has no section for {package}"
    return set(re.findall(r"^\| `([\w/]+\.py)` \|", section.group(1), re.M))


@pytest.mark.parametrize("package", PACKAGES)
def test_the_architecture_page_lists_exactly_the_modules_there_are(package: str) -> None:
    folder = ROOT / package
    modules = {path.relative_to(folder).as_posix() for path in folder.rglob("*.py") if path.name != "__init__.py"}
    assert modules, f"no modules found in {package}"
    documented = listed(package)
    assert not modules - documented, f"{package}: modules missing from docs/architecture.md: {modules - documented}"
    assert not documented - modules, (
        f"{package}: docs/architecture.md lists modules that are not there: {documented - modules}"
    )


def test_the_readme_links_to_files_that_exist() -> None:
    """mkdocs --strict checks the links between docs pages; this checks the README's, which it does not build."""
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    local = [link for link in links if "://" not in link]
    assert "docs/index.md" in local
    assert not [link for link in local if not (ROOT / link).exists()]
