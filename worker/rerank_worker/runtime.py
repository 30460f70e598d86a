"""The model runtime: one CrossEncoder, loaded once, scoring (query, candidate) pairs.

The worker process loads one :class:`Reranker` at start-up (:func:`rerank_worker.model_loader.load`) and hands
it to the worker as its :class:`~rerank_worker.scorer.Scorer`, so jobs reuse the loaded weights. torch is imported
here and in the modules only this one or the loader use (``device``, ``padding``, ``onnx_backend``,
``openvino_backend``); nothing imports them before a real model is loaded, so the fake scorer and the worker's
plumbing run without torch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from sentence_transformers import CrossEncoder
from sentence_transformers.cross_encoder.modules.logit_score import LogitScore
from sentence_transformers.util import batch_to_device

from rerank_contract.defaults import BATCH_SIZE_UNMEASURED, MODEL_MAX_LENGTH_CAP
from rerank_contract.jobs import RerankPayload, ScoreMode
from rerank_worker import backends, batch_tuning, lengths
from rerank_worker.model_source import BackendUnavailable
from rerank_worker.scorer import Prepared, Scores

log = logging.getLogger(__name__)

#: On a CPU a call is cut into at least this many micro-batches (see :meth:`Reranker.micro_batch`).
CPU_MICRO_BATCHES = 4
#: ... none of them smaller than this: below it the per-call cost outweighs the padding saved.
CPU_SMALLEST_MICRO_BATCH = 16


def resolve_dtype(requested: str, device: str) -> str:
    """``auto``: float16 where it is fast and well supported (cuda, mps), float32 on cpu."""
    if requested != "auto":
        return requested
    return "float16" if device.startswith(("cuda", "mps")) else "float32"


class ModelUnusable(ValueError):
    """The model loaded but cannot score a (query, document) pair: the worker cannot start with it."""


#: Tokenize without truncation or padding, to measure what the model would read.
_UNTRUNCATED = {"text": {"truncation": False, "padding": False}, "common": {"return_tensors": None}}


class Reranker:
    """A CrossEncoder on one device, with the scoring options the service exposes; its forward pass runs on
    PyTorch or, with ``backend`` onnx or openvino, on an exported file (:mod:`rerank_worker.backends`).

    Any one-score model sentence-transformers loads works, decoder rerankers (a causal LM plus
    ``LogitScore``, such as Qwen3-Reranker) included. Activated scores are the model's own activation, or
    the sigmoid when that is Identity (a folder saved by sentence-transformers for a decoder reranker keeps
    Identity), so they are in [0, 1] for every one-score model; raw scores skip the activation.
    """

    #: CrossEncoders this process has built: a worker that reloaded its model per job would show it here.
    loads: ClassVar[int] = 0

    def __init__(
        self,
        model: str,
        *,
        device: str,
        batch_size: int | None,
        max_length: int | None,
        dtype: str = "float32",
        instruction: str | None = None,
        max_chunks_per_doc: int | None = None,
        backend: str = "torch",
        backend_variant: str = "optimized",
    ) -> None:
        started = time.perf_counter()
        type(self).loads += 1
        self.model_name = model
        #: None: measured by :meth:`tune`; until then sentence-transformers' default.
        self.batch_size = batch_size or BATCH_SIZE_UNMEASURED
        self._measure_batch_size = batch_size is None
        self.dtype = resolve_dtype(dtype, device)
        self.model = CrossEncoder(
            model, device=device, max_length=max_length, model_kwargs={"dtype": getattr(torch, self.dtype)}
        )
        if self.model.num_labels != 1:
            raise ModelUnusable(f"{model} gives {self.model.num_labels} scores per pair; a reranker must give one")
        self.device = str(self.model.device)
        if max_length is None and self.model.max_seq_length > MODEL_MAX_LENGTH_CAP:
            log.info(
                "%s takes up to %d tokens; serving at most %d per pair (set RERANK_MAX_LENGTH to change it)",
                model,
                self.model.max_seq_length,
                MODEL_MAX_LENGTH_CAP,
            )
            self.model.max_seq_length = MODEL_MAX_LENGTH_CAP
        self.max_length = int(self.model.max_seq_length)
        self.decoder = any(isinstance(module, LogitScore) for module in self.model)
        own = self.model.activation_fn
        self._activated = torch.nn.Sigmoid() if own is None or isinstance(own, torch.nn.Identity) else own
        self.default_instruction = instruction
        self.max_chunks_per_doc = max_chunks_per_doc
        self._check_renders_pairs(model)
        self._empty_cache = torch.mps.empty_cache if self.device.startswith("mps") else None
        self.backend = backend
        self.backend_file: str | None = None
        self._forward: Callable[[dict[str, Any]], Any] = self._torch_forward
        if backend != "torch":
            self._attach(backend, backend_variant)
        log.info(
            "model loaded: %s on %s, %s, backend %s%s (max_length=%d) in %.1fs",
            model,
            self.device,
            self.dtype,
            backend,
            f" ({self.backend_file})" if self.backend_file else "",
            self.max_length,
            time.perf_counter() - started,
        )

    def _attach(self, backend: str, variant: str) -> None:
        """Run the forward pass on ``backend``'s exported file (made now if there is none yet); the CrossEncoder
        keeps tokenizing, prompting and activating, so every rule around the forward call stays the same."""
        if not self.device.startswith("cpu") or self.dtype != "float32":
            raise BackendUnavailable(
                f"RERANK_BACKEND={backend} runs on the CPU from float32 weights (int8 with "
                f"RERANK_BACKEND_VARIANT=int8), not {self.device} {self.dtype}: set RERANK_DEVICE=cpu and "
                "RERANK_DTYPE=auto, or RERANK_BACKEND=torch"
            )
        attached = backends.attach(self.model, self.model_name, backend, variant, threads=torch.get_num_threads())
        self._forward = attached.forward
        self.backend_file = str(attached.file)
        if variant == "int8":
            self.dtype = "int8"
        self.model[0].auto_model.to("meta")  # the torch weights are not used again: give their memory back

    def _torch_forward(self, features: dict) -> torch.Tensor:
        return self.model(batch_to_device(features, self.model.device))["scores"]

    def _check_renders_pairs(self, model: str) -> None:
        """A chat template that cannot render a query and a document fails the start, not every request."""
        try:
            self.model.preprocess([("query", "document")], prompt=self.prompt(None))
        except ValueError as exc:
            raise ModelUnusable(f"{model} cannot score a (query, document) pair: {exc}") from exc

    def prompt(self, instruction: str | None) -> str | None:
        """The prompt ``predict`` gets: the request's instruction, else RERANK_INSTRUCTION, else the model's saved
        default prompt (None: none)."""
        if instruction is None:
            instruction = self.default_instruction
        if instruction is None and self.model.default_prompt_name is not None:
            instruction = self.model.prompts.get(self.model.default_prompt_name)
        return instruction  # "" is no prompt at all: predict applies a default only for None

    def measure(self, query: str, texts: list[str], instruction: str | None) -> list[int]:
        """Untruncated token length of each (query, text) input as the model reads it: template included."""
        if not texts:
            return []
        features = self.model.preprocess(
            [(query, t) for t in texts], prompt=self.prompt(instruction), processing_kwargs=_UNTRUNCATED
        )
        return [len(ids) for ids in features["input_ids"]]

    def prepare(self, payload: RerankPayload) -> Prepared:
        """The payload's texts after its length rules (see :mod:`rerank_worker.lengths`)."""
        chunks = payload.max_chunks_per_doc or self.max_chunks_per_doc
        return lengths.fit(
            self.model.tokenizer,
            self.max_length,
            payload,
            lambda texts: self.measure(payload.query, texts, payload.instruction),
            chunks,
        )

    def score(
        self, query: str, candidates: list[str], mode: ScoreMode = ScoreMode.ACTIVATED, instruction: str | None = None
    ) -> list[float]:
        """Scores in input order, as ``CrossEncoder.predict`` gives them, as plain floats (JSON-safe)."""
        return self.score_many([(query, candidates)], mode, instruction).scores[0]

    @torch.inference_mode()
    def score_many(
        self, requests: list[tuple[str, list[str]]], mode: ScoreMode, instruction: str | None = None
    ) -> Scores:
        """Scores for several (query, candidates) requests from one pass over the model, and the tokens it read.

        ``CrossEncoder.predict``'s own loop, on its public steps (``preprocess``, the forward call), so that
        each micro-batch's features also give the tokens read (its attention mask) without tokenizing every
        pair a second time; the pairs are sorted by length as ``predict`` sorts them, so at the same micro-batch
        size the micro-batches and scores are ``predict``'s (:meth:`micro_batch` may cut a CPU call finer; a
        pair's score does not depend on its batch beyond float noise). Pairs from different requests share
        micro-batches with little padding.
        """
        pairs = [(query, c) for query, candidates in requests for c in candidates]
        if not pairs:
            return Scores([[] for _ in requests], [0 for _ in requests])
        activation = None if mode is ScoreMode.RAW else self._activated
        flat, read = self._score_pairs(pairs, self.prompt(instruction), activation, self.micro_batch(len(pairs)))
        out: list[list[float]] = []
        tokens: list[int] = []
        start = 0
        for _, candidates in requests:
            out.append(flat[start : start + len(candidates)])
            tokens.append(sum(read[start : start + len(candidates)]))
            start += len(candidates)
        return Scores(out, tokens)

    def micro_batch(self, pairs: int) -> int:
        """The micro-batch for a call of ``pairs``: the batch size, but on a CPU at least
        :data:`CPU_MICRO_BATCHES` micro-batches (of at least :data:`CPU_SMALLEST_MICRO_BATCH`) per call.

        A call's pairs are sorted by length, so its micro-batches pad less the more of them there are; the
        best batch size is measured on a large sorted pool, while a CPU's time-bounded batches are small
        (measured: MiniLM-L6 on 2 cores, about 120 pairs per batch, micro-batch 64: 94-100 pairs/s; 16 or 32:
        122-130). A GPU keeps the batch size: its batches are large, and the rule is unmeasured there.
        """
        if not self.device.startswith("cpu") or pairs < CPU_MICRO_BATCHES * CPU_SMALLEST_MICRO_BATCH:
            return self.batch_size
        return min(self.batch_size, max(CPU_SMALLEST_MICRO_BATCH, -(-pairs // CPU_MICRO_BATCHES)))

    def _score_pairs(
        self, pairs: list[tuple[str, str]], prompt: str | None, activation: torch.nn.Module | None, batch_size: int
    ) -> tuple[list[float], list[int]]:
        """Each pair's score and tokens read, in input order."""
        order = np.argsort([-(len(query) + len(candidate)) for query, candidate in pairs])
        flat = [0.0] * len(pairs)
        read = [0] * len(pairs)
        self.model.eval()
        for start in range(0, len(pairs), batch_size):
            chosen = order[start : start + batch_size]
            features = self.model.preprocess([pairs[i] for i in chosen], prompt=prompt)
            mask = features.get("attention_mask")
            lengths = mask.sum(dim=1).tolist() if mask is not None else [features["input_ids"].shape[1]] * len(chosen)
            scores = self._forward(features)
            if torch.is_floating_point(scores) and torch.finfo(scores.dtype).bits < 32:
                scores = scores.float()  # as predict does: upcast half precision before the activation
            if activation is not None:
                scores = activation(scores)
            for i, score, length in zip(chosen.tolist(), scores.reshape(len(chosen)).tolist(), lengths, strict=True):
                flat[i] = score
                read[i] = int(length)
        if self._empty_cache is not None:
            self._empty_cache()  # the MPS allocator otherwise keeps every batch's buffers
        return flat, read

    @torch.inference_mode()
    def tune(self) -> str | None:
        """With no batch size given (``RERANK_BATCH_SIZE=auto``), measure this hardware's best (on the model's
        thread); a line for the log, or None when the size was given."""
        if not self._measure_batch_size:
            return None
        prompt = self.prompt(None)
        choice = batch_tuning.choose(
            batch_tuning.timer(lambda pairs, size: self._score_pairs(pairs, prompt, self._activated, size))
        )
        self.batch_size = choice.size
        self._measure_batch_size = False
        return choice.describe()

    def warmup(self) -> None:
        """One small forward pass so kernels and allocator pools exist before the first request."""
        started = time.perf_counter()
        self.score("warm up", ["the first request should not pay for start-up"] * 2)
        log.info("warm-up done in %.0f ms", (time.perf_counter() - started) * 1000)
