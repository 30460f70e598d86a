"""A document longer than the model reads, its relevant sentence at the end: what chunking must find."""

from __future__ import annotations

QUERY = "machine learning"
RELEVANT = "deep learning neural networks"
OTHERS = ["stock market", "pasta sauce", "garden soil"]


def long_document(reranker, chunks: int) -> str:
    """Cooking filler that fills ``chunks - 1`` chunks exactly, then the relevant sentence at the very end."""
    tokenizer = reranker.model.tokenizer
    room = reranker.max_length - reranker.measure(QUERY, [""], None)[0]  # what the query leaves for a document
    filler = " ".join(["cooking recipes baking bread kitchen knives pasta sauce"] * 40).split()
    words = []
    while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < room * (chunks - 1):
        words.append(filler[len(words)])
    assert len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) == room * (chunks - 1)
    return " ".join(words) + " " + RELEVANT
