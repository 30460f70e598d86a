"""What a new user meets on the command line: one-line errors with exit code 2, --version, help with defaults."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from rerank_contract import __version__
from rerank_server import cli
from tests.support.services import CLI


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANK_")} | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"rerank-server {__version__}"


def test_top_level_help_is_plain_text_with_a_way_to_start() -> None:
    text = cli.build_parser().format_help()
    assert "``" not in text and ":class:" not in text  # no reStructuredText markup
    assert "rerank-server model build" in text and "RERANK_SCORER=fake" in text


def test_model_help_names_its_default_and_folders() -> None:
    parser = cli.build_parser()
    up = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "up")[1]
    text = " ".join(up.format_help().split())
    assert "default: BAAI/bge-reranker-v2-m3" in text and "local folder" in text
    assert "default: 8080" in text and "env RERANK_PORT" in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["up", "--port", "eighty"], "argument --port: invalid int value: 'eighty'"),
        (["bulk", "in.jsonl"], "the following arguments are required: -o/--output"),
        (
            ["bulk", "in.jsonl", "-o", "o.jsonl", "--max-chunks-per-doc", "0"],
            "--max-chunks-per-doc: must be at least 1",
        ),
        (["bulk", "in.jsonl", "-o", "o.jsonl", "--max-chunks-per-doc", "two"], "invalid int value: 'two'"),
    ],
)
def test_a_usage_error_is_one_line(args: list[str], says: str) -> None:
    line = _one_line(_run(*args))
    assert says in line and "--help" in line


def test_bulk_with_a_missing_input_file(tmp_path: Path) -> None:
    line = _one_line(_run("bulk", "missing.jsonl", "-o", "out.jsonl", cwd=tmp_path))
    assert line == "rerank-server bulk: cannot read missing.jsonl: No such file or directory"


def test_bulk_with_a_bad_line(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"query": "q", "candidates": ["a"]}\n{"query": "q"}\n')
    line = _one_line(_run("bulk", "in.jsonl", "-o", "out.jsonl", cwd=tmp_path))
    assert line == "rerank-server bulk: in.jsonl:2: candidates: Field required"


def test_bulk_with_an_instruction_that_is_not_unicode(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"query": "q", "candidates": ["a"]}\n')
    # "\udcff" reaches the process as the byte 0xff, which Python decodes back to the lone surrogate
    line = _one_line(_run("bulk", "in.jsonl", "-o", "out.jsonl", "--instruction", "\udcff", cwd=tmp_path))
    assert line == "rerank-server bulk: --instruction: not valid Unicode: lone surrogate '\\udcff'"


def test_bulk_run_refuses_bad_options_before_reading_or_sending(tmp_path: Path, capsys) -> None:
    from rerank_contract.jobs import ScoreMode
    from rerank_server import bulk_cli

    missing = tmp_path / "missing.jsonl"  # the options are checked first; no client is needed
    code = bulk_cli.run(
        missing, tmp_path / "out.jsonl", None, items_per_job=1, score_mode=ScoreMode.RAW, max_chunks_per_doc=0
    )
    assert code == 2
    assert (
        capsys.readouterr().err
        == "rerank-server bulk: --max-chunks-per-doc: Input should be greater than or equal to 1\n"
    )


def test_bulk_when_the_api_is_down(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"query": "q", "candidates": ["a"]}\n')
    url = f"http://127.0.0.1:{_closed_port()}"
    line = _one_line(_run("bulk", "in.jsonl", "-o", "out.jsonl", "--url", url, cwd=tmp_path))
    assert line.startswith(f"rerank-server bulk: cannot reach the API at {url} (ConnectError")
    assert "rerank-server up" in line


def test_bulk_when_redis_is_down_hides_the_password(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"query": "q", "candidates": ["a"]}\n')
    port = _closed_port()
    redis_url = f"redis://:hunter2@127.0.0.1:{port}/0"
    line = _one_line(
        _run("bulk", "in.jsonl", "-o", "out.jsonl", "--via", "redis", "--redis-url", redis_url, cwd=tmp_path)
    )
    assert line.startswith(f"rerank-server bulk: cannot reach Redis at 127.0.0.1:{port}")
    assert "hunter2" not in line


def test_model_fetch_offline_says_how_to_build_one(tmp_path: Path) -> None:
    line = _one_line(_run("model", "fetch", str(tmp_path / "m")))
    assert line.startswith("rerank-server model: cannot download cross-encoder/ms-marco-MiniLM-L-6-v2")
    assert "rerank-server model build" in line
