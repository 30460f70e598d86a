"""The contract layer: job shapes, settings, error types and the RQ surface, in this process."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_developer_settings(clean_env: None) -> None:
    """Defaults and validation are checked against what the test sets, never a developer's RERANK_* or .env."""
