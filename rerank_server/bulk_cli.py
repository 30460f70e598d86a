"""``rerank-server bulk``: rerank a JSONL file of items through bulk jobs, with a progress bar.

Each input line is ``{"id"?: str, "query": str, "candidates": [str, ...]}``. The items are sent as
jobs of ``--items-per-job`` items (so several workers can share a large file), over HTTP or
straight to Redis; each output line is ``{"id", "results": [{"index", "score"}, ...]}``, best
first, in input order. ``--instruction`` and ``--max-chunks-per-doc`` go into every job.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from rerank_contract import defaults
from rerank_contract.bulk_jobs import JobState
from rerank_contract.jobs import BulkItem, BulkPayload, ScoreMode
from rerank_server.client import HttpClient, QueueClient


class InputError(ValueError):
    """A line of the input file is not a valid item."""


def read_items(path: Path) -> list[BulkItem]:
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            items.append(BulkItem.model_validate_json(line))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            raise InputError(f"{path}:{number}: {where}: {first['msg']}") from None
    if not items:
        raise InputError(f"{path} holds no items: write one {{id, query, candidates}} JSON object per line")
    return items


def check_options(score_mode: ScoreMode, instruction: str | None, max_chunks_per_doc: int | None) -> None:
    """Raise :class:`InputError` naming the flag if the jobs' options are invalid, before anything is read or sent."""
    try:
        BulkPayload(items=[], score_mode=score_mode, instruction=instruction, max_chunks_per_doc=max_chunks_per_doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "options"
        raise InputError(f"{flag}: {first['msg'].removeprefix('Value error, ')}") from None


class ProgressBar:
    """One line on stderr, redrawn in place: ``[#####.....] 1200/4000 pairs  30%``."""

    def __init__(self, total: int, out: TextIO = sys.stderr, width: int = 30) -> None:
        self.total, self.out, self.width = total, out, width
        self.started = time.monotonic()

    def show(self, done: int) -> None:
        fraction = done / self.total if self.total else 1.0
        filled = int(fraction * self.width)
        rate = done / max(time.monotonic() - self.started, 1e-9)
        bar = "#" * filled + "." * (self.width - filled)
        self.out.write(f"\r[{bar}] {done}/{self.total} pairs {fraction:4.0%}  {rate:,.0f} pairs/s")
        self.out.flush()

    def close(self) -> None:
        self.out.write("\n")


def run(
    input_path: Path,
    output_path: Path,
    client: HttpClient | QueueClient,
    *,
    items_per_job: int,
    score_mode: ScoreMode,
    instruction: str | None = None,
    max_chunks_per_doc: int | None = None,
    poll_s: float = defaults.BULK_POLL_S,
    model: str | None = None,
) -> int:
    """Submit, follow and collect; returns the exit code (0 when every job finished).

    ``instruction`` and ``max_chunks_per_doc`` apply to every item (None: the worker's defaults); ``model`` names
    the served model (None: the default)."""
    try:
        check_options(score_mode, instruction, max_chunks_per_doc)
        items = read_items(input_path)
        if not output_path.parent.is_dir():
            raise InputError(f"cannot write {output_path}: no folder {output_path.parent}")
    except InputError as exc:
        print(f"rerank-server bulk: {exc}", file=sys.stderr)
        return defaults.EXIT_USAGE
    batches = [items[i : i + items_per_job] for i in range(0, len(items), items_per_job)]
    job_ids = [
        client.submit_bulk(
            batch, score_mode=score_mode, instruction=instruction, max_chunks_per_doc=max_chunks_per_doc, model=model
        )
        for batch in batches
    ]
    print(f"submitted {len(items)} items as {len(job_ids)} job(s)", file=sys.stderr)

    pairs = {job_id: sum(len(i.candidates) for i in batch) for job_id, batch in zip(job_ids, batches, strict=True)}
    bar = ProgressBar(sum(pairs.values()))
    states: dict[str, JobState] = {}
    try:
        while True:
            for job_id in job_ids:
                if job_id not in states or not states[job_id].done:
                    states[job_id] = client.job(job_id)
            bar.show(sum(_pairs_done(states[j], pairs[j]) for j in job_ids))
            if all(state.done for state in states.values()):
                break
            time.sleep(poll_s)
    finally:  # an error line (the API went away, say) then starts on a line of its own
        bar.close()

    failed = [s for s in states.values() if s.status != "finished"]
    for state in failed:
        print(f"error: job {state.id} {state.status}: {state.error}", file=sys.stderr)
    if failed:
        return 1
    with output_path.open("w", encoding="utf-8") as out:
        for job_id in job_ids:
            result = states[job_id].result
            assert result is not None
            for item in result.items:
                out.write(item.model_dump_json() + "\n")
    print(f"wrote {len(items)} results to {output_path}", file=sys.stderr)
    return 0


def _pairs_done(state: JobState, pairs: int) -> int:
    if state.status == "finished":
        return pairs
    return state.progress.done if state.progress else 0
