"""mkdocs hook: ``bench/README.md`` (the benchmarks' method and every recorded run) as the page ``bench-results.md``.

The file stays where the benchmark code is; the site shows it as it is, so the two cannot differ.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

BENCH_README = Path(__file__).resolve().parents[2] / "bench" / "README.md"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """mkdocs' hook: add the generated page."""
    files.append(File.generated(config, "bench-results.md", content=BENCH_README.read_text()))
    return files
