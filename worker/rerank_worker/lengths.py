"""Token-length rules of a payload, applied to its candidates before scoring.

The model itself cuts a too-long pair from the right (``longest_first``). The rules here need the
tokenizer: a per-candidate token cap (Cohere's ``max_tokens_per_doc``), cutting from the left (TEI's
``truncation_direction``) and refusing too-long pairs (TEI's ``truncate=false``). They return plain
candidate texts, so the scoring path (and any batching across jobs) sees ordinary candidates.
Cutting at token boundaries uses offset mappings, which need a fast tokenizer (rerankers on the
Hugging Face hub ship one).
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from rerank_contract.jobs import InputTooLong, RerankPayload, TruncationSide


def fit(tokenizer: PreTrainedTokenizerBase, max_length: int, payload: RerankPayload) -> list[str]:
    """The candidates as they should be scored; raises :class:`InputTooLong` for ``truncate=False``."""
    candidates = payload.candidates
    if payload.max_tokens_per_doc is not None:
        candidates = clip(tokenizer, candidates, payload.max_tokens_per_doc, payload.truncation_side)
    if not payload.truncate:
        check_fits(tokenizer, max_length, payload.query, candidates)
    elif payload.truncation_side is TruncationSide.LEFT:
        query_tokens = len(tokenizer(payload.query, add_special_tokens=False)["input_ids"])
        room = max_length - query_tokens - tokenizer.num_special_tokens_to_add(pair=True)
        if room > 0:  # else the query alone is too long: the model's own truncation cuts it
            candidates = clip(tokenizer, candidates, room, TruncationSide.LEFT)
    return candidates


def clip(tokenizer: PreTrainedTokenizerBase, texts: list[str], limit: int, side: TruncationSide) -> list[str]:
    """Each text cut at a token boundary to at most ``limit`` tokens, keeping its start (right) or end (left)."""
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for text, offsets in zip(texts, encoded["offset_mapping"], strict=True):
        if len(offsets) <= limit:
            out.append(text)
        elif side is TruncationSide.RIGHT:
            out.append(text[: offsets[limit - 1][1]])
        else:
            out.append(text[offsets[-limit][0] :])
    return out


def check_fits(tokenizer: PreTrainedTokenizerBase, max_length: int, query: str, candidates: list[str]) -> None:
    """Raise :class:`InputTooLong` naming the first (query, candidate) pair over ``max_length`` tokens."""
    if not candidates:
        return
    encoded = tokenizer([query] * len(candidates), candidates)
    for index, ids in enumerate(encoded["input_ids"]):
        if len(ids) > max_length:
            raise InputTooLong(
                f"candidate {index} with the query is {len(ids)} tokens, the model takes at most {max_length}: "
                "shorten it or send truncate=true to have it cut"
            )
