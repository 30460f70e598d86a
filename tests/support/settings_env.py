"""A clean settings environment: no RERANK_* variable or ``.env`` file of the developer's reaches a test
(a pytest plugin, registered by tests/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings built in the test read only what it sets: RERANK_* unset, and an empty working directory."""
    for key in [k for k in os.environ if k.startswith("RERANK_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env
