"""The app factory: importing the API reads no setting, builds no app and configures no logging."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from rerank_api.app import create_app
from rerank_contract.settings import Settings


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RERANK_")}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_importing_the_api_reads_no_setting_and_configures_no_logging() -> None:
    code = (
        "import logging, rerank_api.app, rerank_server;"
        "assert not hasattr(rerank_api.app, 'app'), 'an app was built at import';"
        "assert not logging.getLogger().handlers, 'logging configured at import'"
    )
    done = _python(code, RERANK_PORT="not-a-port", RERANK_LOG_LEVEL="LOUD")
    assert done.returncode == 0, done.stderr


def test_rerank_server_app_reads_the_settings_on_first_access() -> None:
    """``uvicorn rerank_server:app`` gets a clear settings error (not at import, at access), and a valid
    environment gets one app, with logging configured once."""
    bad = _python("import rerank_server; rerank_server.app", RERANK_PORT="not-a-port")
    assert bad.returncode != 0
    assert "port" in bad.stderr and "ValidationError" in bad.stderr
    code = (
        "import logging, rerank_server;"
        "first = rerank_server.app; assert rerank_server.app is first;"
        "root = logging.getLogger(); assert len(root.handlers) == 1, root.handlers;"
        "assert root.level == logging.WARNING, root.level"
    )
    good = _python(code, RERANK_LOG_LEVEL="WARNING")
    assert good.returncode == 0, good.stderr


def test_create_app_takes_its_settings_and_configures_no_logging() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", log_level="DEBUG"))
    assert app.state.settings.log_level == "DEBUG"
    assert root.handlers == handlers and root.level == level
