"""Only tests under ``tests/e2e`` start service processes, so ``-m "not e2e"`` starts none (a pytest plugin).

``tests/e2e/conftest.py`` marks every test there ``e2e``; :class:`tests.support.services.Service` asks
:func:`refuse_outside_e2e` before it starts a process, and a test elsewhere that tries fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent.parent / "e2e"

#: The test being set up or run (its module-scoped fixtures included).
_CURRENT_TEST: dict[str, pytest.Item] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _CURRENT_TEST["item"] = item  # before its fixtures (a module's stack included) are set up


def refuse_outside_e2e(what: str) -> None:
    item = _CURRENT_TEST.get("item")
    if item is not None and E2E_DIR not in Path(item.path).resolve().parents:
        pytest.fail(f"{item.nodeid} starts {what} but is not an e2e test (under tests/e2e)", pytrace=False)
