"""``python -m bench.model_work MODEL CANDIDATES``: the model's own CPU work per call, with no server around it.

The capacity benchmark's bound: every system it measures runs the same model on the same calls, so the CPU
time of ``CrossEncoder.predict`` alone (tokenizing and the forward pass), on the pairs of as many calls as
there are concurrent clients, best micro-batch, is what each call costs before any HTTP, queue or
bookkeeping. Run in a process of its own with the systems' settings (one torch thread), and printed as JSON.
"""

from __future__ import annotations

import json
import sys
import time

from bench.workload import Workload

CALLS = 64
SIZES = (16, 32, 64, 128, 256)


def measure(model: str, candidates: int, repeats: int = 8) -> dict[str, float]:
    """CPU ms per call of ``predict`` at each micro-batch size, the best one, and the size it was at."""
    from sentence_transformers import CrossEncoder

    encoder = CrossEncoder(model, device="cpu")
    workload = Workload()
    pairs = [(query, c) for query, cands in (workload.request(candidates) for _ in range(CALLS)) for c in cands]
    per_size: dict[int, float] = {}
    for size in SIZES:
        encoder.predict(pairs, batch_size=size)  # warm-up
        start = time.process_time()
        for _ in range(repeats):
            encoder.predict(pairs, batch_size=size)
        per_size[size] = (time.process_time() - start) * 1000 / (repeats * CALLS)
    best = min(per_size, key=per_size.__getitem__)
    return {"ms_per_call": per_size[best], "batch_size": best, **{str(s): v for s, v in per_size.items()}}


def main(argv: list[str] | None = None) -> int:
    model, candidates = argv if argv is not None else sys.argv[1:]
    print(json.dumps(measure(model, int(candidates))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
