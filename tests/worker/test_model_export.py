"""``rerank-server model export``: files made where a worker looks for them, a progress line per step, and the
agreement report (largest score difference, top-1, Kendall tau) of each file against torch."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from rerank_contract.defaults import EXIT_STARTUP_FAILED, EXIT_USAGE
from rerank_server import agreement
from rerank_server.cli import main


def report(out: str, name: str) -> dict[str, float]:
    block = out.split(f"{name} against torch float32, ", 1)[1]
    numbers = {
        "queries": r"^(\d+) queries",
        "max_diff": r"largest score difference ([0-9.e+-]+)",
        "top1": r"top-1 the same for (\d+)/",
        "tau_low": r"lowest ([0-9.-]+)",
    }
    return {key: float(re.search(pattern, block, re.MULTILINE).group(1)) for key, pattern in numbers.items()}


def test_export_makes_both_files_and_reports_agreement(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = Path(shutil.copytree(model_dir, tmp_path / "tiny"))
    pairs = tmp_path / "pairs.jsonl"
    topics = {"machine learning": ["deep learning", "pasta sauce", "neural networks"], "finance": ["bank loans", "x"]}
    pairs.write_text("".join(json.dumps({"query": q, "candidates": c}) + "\n" for q, c in topics.items()))
    assert main(["model", "export", str(folder), "--backend", "onnx", "--quantize", "int8", "--pairs", str(pairs)]) == 0
    out, err = capsys.readouterr()
    assert (folder / "onnx" / "model_optimized.onnx").exists() and (folder / "onnx" / "model_int8.onnx").exists()
    assert "export: exporting the model graph" in err and "export: quantizing to int8" in err
    fp32, int8 = report(out, "onnx optimized"), report(out, "onnx int8")
    assert fp32 == {"queries": 2, "max_diff": pytest.approx(0, abs=1e-4), "top1": 2, "tau_low": 1.0}
    assert int8["queries"] == 2 and 0 < int8["max_diff"] < 0.5
    assert "RERANK_BACKEND=onnx RERANK_BACKEND_VARIANT=int8" in out

    assert main(["model", "export", str(folder), "--backend", "onnx"]) == 0  # found, not made again
    out, err = capsys.readouterr()
    assert "(exported before, current)" in out and "exporting the model graph" not in err


def test_export_refusals_are_one_line(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = Path(shutil.copytree(model_dir, tmp_path / "tiny"))
    assert main(["model", "export", str(folder), "--backend", "openvino", "--quantize", "int8"]) == EXIT_STARTUP_FAILED
    assert "offers no int8 variant" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"query": "q"}\n')
    assert main(["model", "export", str(folder), "--backend", "onnx", "--pairs", str(tmp_path / "bad.jsonl")]) == (
        EXIT_USAGE
    )
    assert "bad.jsonl:1: candidates" in capsys.readouterr().err


def test_agreement_numbers() -> None:
    same = agreement.compare([[0.9, 0.1, 0.5]], [[0.9, 0.1, 0.5]])
    assert (same.max_diff, same.top1_same, same.taus) == (0.0, 1, [1.0])
    moved = agreement.compare([[0.4, 0.5, 0.1], [0.2, 0.3]], [[0.5, 0.4, 0.1], [0.2, 0.3]])
    assert moved.max_diff == pytest.approx(0.1) and moved.top1_same == 1
    assert moved.taus == pytest.approx([1 / 3, 1.0])
    assert math.isnan(agreement.kendall_tau([1, 1], [0.2, 0.3]))  # all ties: no order to compare
