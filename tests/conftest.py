"""The whole suite's setup: the shared fixture plugins and the environment. Each layer's own fixtures live
in its folder's conftest.py; helpers in tests/support/."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.support.e2e_guard",
    "tests.support.model_fixtures",
    "tests.support.redis_fixtures",
    "tests.support.settings_env",
]


def pytest_configure(config: pytest.Config) -> None:
    # No download in a test (the models are built locally), and no tokenizer threads forked into workers.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
