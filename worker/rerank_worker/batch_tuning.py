"""The micro-batch size, measured at start-up on this machine's hardware (``RERANK_BATCH_SIZE=auto``).

The best size is not a constant: the MiniLM-L6 cross-encoder on a 2-core AVX2 CPU scores 58 pairs/s at 16
and 39 at 64, while a GPU keeps gaining up to a few hundred. So the worker times the model on a synthetic
load of typical reranking pairs (a short query, passages of 40 to 120 words) at growing sizes, and keeps
the smallest size within :data:`TOLERANCE` of the best rate (smaller batches answer sooner and hold less
memory). It stops growing once the rate has clearly passed its peak, or once one size's trial took
:data:`~rerank_contract.defaults.TUNE_TRIAL_BUDGET_S`, so a large model on a slow CPU adds seconds to the start,
not minutes.

The search is pure logic over a ``rate(size)`` callable, so it is tested without a model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rerank_contract.defaults import TUNE_TRIAL_BUDGET_S

#: Sizes tried, in order; a GPU rarely gains past 256 on reranking lengths, and memory grows with the size.
SIZES: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
#: The smallest size within this share of the best rate wins.
TOLERANCE = 0.97
#: A size whose rate falls this far below the best so far ends the search: the peak is behind.
PAST_PEAK = 0.85
#: Timed runs per size at most; a slow model gets one.
REPEATS = 3

_QUERY = "how do rerankers order passages for retrieval augmented generation"
_PASSAGE = (
    "a cross encoder reads the query and each passage together and gives one relevance score so the passages "
    "a retriever found can be put in order before the best few are handed to a language model which then "
    "answers with them the search index may hold millions of documents in many languages and formats"
)
_WORDS = _PASSAGE.split()


def pairs(count: int) -> list[tuple[str, str]]:
    """``count`` (query, passage) pairs of typical reranking lengths: passages of 40 to 120 words."""
    out = []
    for i in range(count):
        words = 40 + (i * 20) % 100
        out.append((_QUERY, " ".join(_WORDS[(i + j) % len(_WORDS)] for j in range(words))))
    return out


@dataclass(frozen=True)
class Choice:
    """The size chosen and the rate (pairs/s) measured at each size tried."""

    size: int
    rates: dict[int, float]

    def describe(self) -> str:
        table = ", ".join(f"{size}: {rate:,.0f}" for size, rate in self.rates.items())
        return f"micro-batch {self.size} (pairs/s by size: {table})"


def choose(rate: Callable[[int], tuple[float, float]], sizes: Sequence[int] = SIZES) -> Choice:
    """Try ``sizes`` in order; ``rate(size)`` gives (pairs/s, seconds the trial took)."""
    rates: dict[int, float] = {}
    for size in sizes:
        rates[size], took = rate(size)
        best = max(rates.values())
        if rates[size] < PAST_PEAK * best or took > TUNE_TRIAL_BUDGET_S:
            break
    best = max(rates.values())
    return Choice(min(s for s, r in rates.items() if r >= TOLERANCE * best), rates)


def timer(score: Callable[[list[tuple[str, str]], int], object]) -> Callable[[int], tuple[float, float]]:
    """``rate(size)`` for :func:`choose` from ``score(pairs, batch_size)``: one untimed call at the size (a new
    input shape: kernels, allocator pools), then two micro-batches timed, up to :data:`REPEATS` times while that
    is quick, keeping the best rate (a machine shared with other work is noisy, and noise only slows a run)."""

    def rate(size: int) -> tuple[float, float]:
        score(pairs(size), size)
        load = pairs(2 * size)
        best, spent = 0.0, 0.0
        for _ in range(REPEATS):
            started = time.perf_counter()
            score(load, size)
            took = time.perf_counter() - started
            best, spent = max(best, len(load) / max(took, 1e-9)), spent + took
            if spent > TUNE_TRIAL_BUDGET_S / REPEATS:
                break
        return best, spent

    return rate
