"""A worker that cannot get its model says why in one line, names the two ways out, and exits with code 3."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from huggingface_hub import constants

from rerank_contract.defaults import EXIT_STARTUP_FAILED
from rerank_contract.settings import Settings
from rerank_worker import main, model_loader, model_source
from rerank_worker.model_source import ModelUnavailable, check_available


def _ways_out(message: str) -> None:
    assert "--model FOLDER or RERANK_MODEL=FOLDER" in message and "rerank-server model build" in message
    assert "connect to the internet" in message


def test_offline_and_not_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached there
    with pytest.raises(ModelUnavailable) as caught:
        check_available("BAAI/bge-reranker-v2-m3")
    assert "not a local folder nor in the Hugging Face cache, and HF_HUB_OFFLINE is set" in str(caught.value)
    _ways_out(str(caught.value))


def test_hub_unreachable_fails_at_once_not_after_a_minute_of_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed}")
    with pytest.raises(ModelUnavailable) as caught:
        check_available("someone/not-downloaded-model", hub_timeout_s=2)
    assert f"http://127.0.0.1:{closed} cannot be reached (ConnectError" in str(caught.value)
    _ways_out(str(caught.value))


def test_a_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative path, resolved in an empty folder: not the checkout's own models/
    with pytest.raises(ModelUnavailable, match=r"cannot load model \./models/tiny: there is no such folder"):
        check_available("./models/tiny")


def test_an_existing_folder_is_left_to_the_loader(tmp_path: Path) -> None:
    check_available(str(tmp_path))


def test_the_worker_logs_one_line_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unavailable(settings: Settings) -> None:
        raise ModelUnavailable("cannot load model x: there is no such folder; either ...")

    monkeypatch.setattr(model_loader, "load", unavailable)
    with caplog.at_level(logging.ERROR, logger="rerank_worker"):
        assert main.run(Settings(model="x")) == EXIT_STARTUP_FAILED
    [record] = caplog.records
    assert record.getMessage().startswith("cannot load model x") and record.exc_info is None


def test_the_new_model_notice_is_dropped_other_lines_kept() -> None:
    notice = model_source.DropNewModelNotice()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("sentence_transformers.base.model", logging.INFO, "", 0, message, None, None)

    assert not notice.filter(record("No modules.json found for ./m, initializing a new CrossEncoder model."))
    assert notice.filter(record("Use pytorch device: cpu"))
