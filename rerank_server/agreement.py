"""How far a variant's scores are from the float32 model's, on the same (query, candidates) requests.

int8 is never chosen silently: ``rerank-server model export --quantize int8`` (and the bench) print these
numbers, and the user decides. The largest score difference says how far any one score moved; top-1 agreement
and Kendall's tau (per query, 1.0: the same order) say whether the rankings a user sees changed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Agreement:
    queries: int
    pairs: int
    max_diff: float
    mean_diff: float
    top1_same: int
    #: Kendall's tau-b of each query's candidates (queries of one candidate, or all ties, left out).
    taus: list[float]

    def lines(self, name: str, reference: str) -> list[str]:
        taus = f"mean {statistics.fmean(self.taus):.3f}, lowest {min(self.taus):.3f}" if self.taus else "n/a"
        share = 100 * self.top1_same / self.queries if self.queries else 100.0
        return [
            f"{name} against {reference}, {self.queries} queries, {self.pairs} pairs (activated scores, 0..1):",
            f"  largest score difference {self.max_diff:.2g} (mean {self.mean_diff:.2g})",
            f"  top-1 the same for {self.top1_same}/{self.queries} queries ({share:.0f}%)",
            f"  Kendall tau per query: {taus} (1.0: the same order)",
        ]


def compare(variant: list[list[float]], reference: list[list[float]]) -> Agreement:
    """``variant``'s scores against ``reference``'s, per request in the same order."""
    diffs = [abs(v - r) for vs, rs in zip(variant, reference, strict=True) for v, r in zip(vs, rs, strict=True)]
    top1 = sum(_best(vs) == _best(rs) for vs, rs in zip(variant, reference, strict=True) if rs)
    taus = [t for vs, rs in zip(variant, reference, strict=True) if not math.isnan(t := kendall_tau(vs, rs))]
    return Agreement(
        queries=len(reference),
        pairs=len(diffs),
        max_diff=max(diffs, default=0.0),
        mean_diff=statistics.fmean(diffs) if diffs else 0.0,
        top1_same=top1,
        taus=taus,
    )


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b of two score lists (ties counted as in scipy's default); NaN when either is all ties."""
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denominator if denominator else math.nan


def _best(scores: list[float]) -> int:
    return max(range(len(scores)), key=scores.__getitem__)
