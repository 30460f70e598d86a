"""How far reduced precision moves scores and order, against float32 on the same device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.systems import Setup
from bench.workload import Workload

if TYPE_CHECKING:
    from bench.__main__ import Report


def dtype_accuracy(setup: Setup, workload: Workload, report: Report) -> None:
    """How far reduced precision moves scores and order, against float32 on the same device."""
    requests = [workload.request(16) for _ in range(32)]
    reference = Setup(setup.model_dir, setup.device, "float32").cross_encoder()
    rows = []
    for name in ("float16", "bfloat16"):
        model = Setup(setup.model_dir, setup.device, name).cross_encoder()
        worst, same_top = 0.0, 0
        for q, cs in requests:
            a = reference.predict([(q, c) for c in cs], show_progress_bar=False)
            b = model.predict([(q, c) for c in cs], show_progress_bar=False)
            worst = max(worst, float(abs(a - b).max()))
            same_top += int(a.argmax() == b.argmax())
        rows.append([name, f"{worst:.2e}", f"{same_top}/{len(requests)}"])
    report.add("## Reduced precision against float32", "")
    report.table(["dtype", "max |score difference|", "same top-1"], rows)
