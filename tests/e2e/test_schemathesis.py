"""Schemathesis against the live server's own OpenAPI schema: no 5xx, and answers as documented.

A fixed seed and example budget keep the run reproducible and under a minute. It runs every phase
(the schema's examples, coverage of boundaries and invalid values, random fuzzing, and stateful
sequences such as submit -> poll -> cancel a bulk job) with the checks below.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.services import Stack

CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "unsupported_method",
)
MAX_EXAMPLES = 25
SEED = 20261125


def test_live_schema_holds_under_schemathesis(stack: Stack, tmp_path: Path) -> None:
    pid = stack.health()["workers"][0]["pid"]
    schema = httpx.get(f"{stack.url}/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{stack.url}/openapi.json",
        f"--checks={','.join(CHECKS)}",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--workers=1",
        "--generation-database=none",
        "--request-timeout=30",
        "--no-color",
    ]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-10_000:]
    assert f"Tested: {operations}" in report, report[-3_000:]
    generated = re.search(r"(\d+) generated, \1 passed", report)
    assert generated and int(generated.group(1)) >= 20 * operations, report[-3_000:]  # a real budget was spent
    health = stack.health()
    assert health["status"] == "ok", json.dumps(health)
    assert [w["pid"] for w in health["workers"]] == [pid]  # the fuzzing crashed no worker
