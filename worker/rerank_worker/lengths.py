"""Token-length rules of a payload, applied to its candidates before scoring, on the input as the model sees it.

A pair's length is measured on what the model reads: for a BERT-style cross-encoder the tokenizer's
``[CLS] query [SEP] candidate [SEP]``, for a decoder reranker the chat-rendered instruction, query and
document with the template's own text (``measure`` does the rendering; see :mod:`rerank_worker.runtime`).
The model itself cuts a too-long input from the right. The rules here are a per-candidate token cap
(Cohere's ``max_tokens_per_doc``), cutting from the left (TEI's ``truncation_direction``), refusing too-long
pairs (TEI's ``truncate=false``) and chunking (``max_chunks_per_doc``). They return plain texts, so the
scoring path (and any batching across jobs) sees ordinary candidates. Cutting at token boundaries uses
offset mappings, which need a fast tokenizer (rerankers on the Hugging Face hub ship one).
"""

from __future__ import annotations

from collections.abc import Callable

from transformers import PreTrainedTokenizerBase

from rerank_contract.jobs import InputTooLong, RerankPayload, TruncationSide
from rerank_worker.scorer import Prepared

#: ``measure(texts)``: the token length of each (query, text) input as the model reads it, untruncated.
Measure = Callable[[list[str]], list[int]]

#: A text whose cut still does not fit (a tokenizer merging across the cut) is cut this many more times.
_REFITS = 3


def fit(
    tokenizer: PreTrainedTokenizerBase, max_length: int, payload: RerankPayload, measure: Measure, chunks: int | None
) -> Prepared:
    """The texts to score; raises :class:`InputTooLong` for ``truncate=False``. ``chunks``: max chunks per doc.

    Pairs are measured only for the rules that need their lengths (refusing, left truncation, chunking): the
    default, cutting from the right, is the model's own truncation, and the tokens read are counted when scored.
    """
    candidates = payload.candidates
    if payload.max_tokens_per_doc is not None:
        candidates = clip(tokenizer, candidates, payload.max_tokens_per_doc, payload.truncation_side)
    if payload.truncate and chunks is None and payload.truncation_side is TruncationSide.RIGHT:
        return Prepared(list(candidates))
    lengths = measure(candidates)
    if not payload.truncate:
        for index, length in enumerate(lengths):
            if length > max_length:
                raise InputTooLong(
                    f"candidate {index} with the query is {length} tokens, the model takes at most {max_length}: "
                    "shorten it or send truncate=true to have it cut"
                )
    over = [i for i, length in enumerate(lengths) if length > max_length]
    if not over or (chunks is None and payload.truncation_side is TruncationSide.RIGHT):
        return Prepared(list(candidates))
    doc_tokens = [len(ids) for ids in tokenizer([candidates[i] for i in over], add_special_tokens=False)["input_ids"]]
    pieces: dict[int, list[str]] = {}
    for i, doc in zip(over, doc_tokens, strict=True):
        room = max_length - (lengths[i] - doc)  # what the query, instruction and template leave for the doc
        if room > 0:  # else the query alone is too long: the model's own truncation cuts it
            pieces[i] = _fitted(tokenizer, max_length, candidates[i], room, measure, chunks)
    texts: list[str] = []
    owners: list[int] = []
    for i, candidate in enumerate(candidates):
        parts = pieces.get(i, [candidate])
        texts += parts
        owners += [i] * len(parts)
    return Prepared(texts, owners if len(texts) > len(candidates) else None)


def _fitted(
    tokenizer: PreTrainedTokenizerBase, max_length: int, text: str, room: int, measure: Measure, chunks: int | None
) -> list[str]:
    """``text`` cut to fit: its end (left truncation) or up to ``chunks`` consecutive chunks, each within max_length."""
    for _ in range(_REFITS):
        parts = split(tokenizer, text, room, chunks) if chunks is not None else clip(tokenizer, [text], room, "left")
        excess = max(measure(parts)) - max_length
        if excess <= 0:
            return parts
        room -= excess
        if room <= 0:
            break
    return parts


def split(tokenizer: PreTrainedTokenizerBase, text: str, size: int, limit: int) -> list[str]:
    """``text`` in consecutive pieces of at most ``size`` tokens, cut at token boundaries; the first ``limit``."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    pieces = []
    for start in range(0, len(offsets), size)[:limit]:
        end = min(len(offsets), start + size)
        begin = offsets[start][0] if start else 0
        pieces.append(text[begin : offsets[end - 1][1] if end < len(offsets) else len(text)])
    return pieces


def clip(tokenizer: PreTrainedTokenizerBase, texts: list[str], limit: int, side: TruncationSide | str) -> list[str]:
    """Each text cut at a token boundary to at most ``limit`` tokens, keeping its start (right) or end (left)."""
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for text, offsets in zip(texts, encoded["offset_mapping"], strict=True):
        if len(offsets) <= limit:
            out.append(text)
        elif TruncationSide(side) is TruncationSide.RIGHT:
            out.append(text[: offsets[limit - 1][1]])
        else:
            out.append(text[offsets[-limit][0] :])
    return out
