"""The first run as the README tells it (build a small model, `up`, a ranked answer), and a start without its model."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from rerank_server import cli
from tests.support.ports import free_port
from tests.support.services import CLI, service_env
from tests.support.waiting import wait_until


def test_model_build_then_up_answers_with_a_ranking_and_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models" / "tiny"
    assert cli.main(["model", "build", str(folder)]) == 0  # in this process: one torch start-up less
    assert f"rerank-server up --model {folder}" in capsys.readouterr().out

    port = free_port()
    env = service_env(f"redis://127.0.0.1:{free_port()}/0", folder, PORT=str(port))
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*CLI, "up"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: "is up at" in log_path.read_text(), 120, "rerank-server up to announce")
            body = {"query": "machine learning", "candidates": ["cooking recipes", "deep learning", "stock market"]}
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/rerank", json=body, timeout=30).json()
            assert answer["results"][0]["index"] == 1
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    output = log_path.read_text()
    ready = [line for line in output.splitlines() if "is up at" in line]
    assert len(ready) == 1
    assert f"http://127.0.0.1:{port}/ : model {folder} on cpu, 1 worker" in ready[0]
    assert "No modules.json" not in output
    assert "HTTP Request" not in output  # the probes' own log lines
    assert output.count('"GET /health HTTP/1.1" 503') <= 1, output  # probes wait for a worker's heartbeat


def test_a_model_that_cannot_be_had_is_a_short_error_naming_the_ways_out(tmp_path: Path) -> None:
    env = service_env(f"redis://127.0.0.1:{free_port()}/0", Path("BAAI/bge-reranker-v2-m3"), PORT=str(free_port()))
    result = subprocess.run([*CLI, "up"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "No modules.json" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert (
        "cannot load model BAAI/bge-reranker-v2-m3: it is not a local folder nor in the Hugging Face cache" in errors[0]
    )
    assert "HF_HUB_OFFLINE is set" in errors[0]
    assert (
        "--model FOLDER" in errors[0]
        and "rerank-server model build" in errors[0]
        and "connect to the internet" in errors[0]
    )
    lines = result.stderr.splitlines()
    # The reason comes first, not buried: after up's own lines (private Redis, the two children started).
    assert lines.index(errors[0]) <= 3 and len(lines) <= 20, result.stderr
