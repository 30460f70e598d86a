"""ONNX Runtime for an encoder cross-encoder: the project's own small exporter, and the forward pass on its file.

sentence-transformers' own ONNX backend cannot be installed beside sentence-transformers 6: it needs
optimum-onnx, whose newest release (0.1.0) pins transformers < 4.58 while sentence-transformers 6 needs
transformers 5. ONNX Runtime itself needs no optimum: ``torch.onnx.export`` (dynamo) writes the graph of
the model's classification forward, onnxscript's ``ort_fusions`` fuses attention, layer norms and GELU
into ONNX Runtime's contrib ops (scores unchanged: 1e-7 on MiniLM-L6), and onnxruntime's
``quantize_dynamic`` makes the int8 variant. Tokenizing, prompts, truncation and activation stay the
CrossEncoder's: only the forward call runs here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

#: The inputs an encoder's classification forward takes, in the order the graph declares them.
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Past this many bytes of weights the graph cannot be one protobuf (its limit is 2 GiB): weights go beside it.
_EXTERNAL_DATA_BYTES = 1 << 30

#: The files each variant is saved as, in the backend's folder.
FILES = {"optimized": "model_optimized.onnx", "int8": "model_int8.onnx"}

Progress = Callable[[str], None]


class _Logits(torch.nn.Module):
    """The classification model's forward with plain tensor inputs and the logits as the one output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def export(cross_encoder: Any, folder: Path, variant: str, progress: Progress, *, reuse: Path | None) -> Path:
    """Write ``variant``'s file (the fused float32 graph; int8 is quantized from it) into ``folder``; returns it.
    ``reuse``: a current fused graph exported before, to quantize from.

    Files are written under a temporary name and renamed into place, so a concurrent start never reads half a
    file. ``cross_encoder`` must be an encoder classifier in float32 (checked by :mod:`rerank_worker.backends`).
    """
    optimized = reuse or folder / FILES["optimized"]
    if reuse is None:
        _export_optimized(cross_encoder, optimized, progress)
    if variant == "optimized":
        return optimized
    target = folder / FILES[variant]
    started = time.perf_counter()
    progress(f"quantizing to int8 (dynamic, per channel) -> {target}")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _written(target) as tmp, _quiet():
        quantize_dynamic(
            optimized,
            tmp,
            weight_type=QuantType.QInt8,
            per_channel=True,
            use_external_data_format=_large(cross_encoder),
        )
    progress(f"int8 model written in {time.perf_counter() - started:.1f}s")
    return target


def export_graph(cross_encoder: Any, target: Path, progress: Progress) -> None:
    """The classification forward's plain ONNX graph (dynamic batch and sequence) at ``target``; large models keep
    their weights in ``target``.data beside it."""
    started = time.perf_counter()
    progress("exporting the model graph with torch.onnx (dynamo); this takes a while, once")
    features = cross_encoder.preprocess([("a query", "a longer document to score"), ("query two", "document")])
    kwargs = {name: features[name] for name in _INPUTS if name in features}
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    large = _large(cross_encoder)
    with _quiet(), torch.inference_mode(False):
        program = torch.onnx.export(
            _Logits(cross_encoder[0].auto_model.eval()),
            (),
            kwargs=kwargs,
            dynamo=True,
            dynamic_shapes={name: {0: batch, 1: sequence} for name in kwargs},
            input_names=list(kwargs),
            output_names=["logits"],
            external_data=large,
            verbose=False,
        )
        assert program is not None  # None only from the legacy exporter (dynamo=False)
        program.save(str(target), external_data=large)
    progress(f"graph exported in {time.perf_counter() - started:.1f}s")


def _export_optimized(cross_encoder: Any, target: Path, progress: Progress) -> None:
    import onnx_ir as ir
    from onnxscript.rewriter import ort_fusions

    started = time.perf_counter()
    large = _large(cross_encoder)
    plain = target.with_name(f".plain-{os.getpid()}.onnx")
    try:
        export_graph(cross_encoder, plain, progress)
        progress("fusing attention, layer norms and GELU into ONNX Runtime's kernels")
        with _quiet():
            model, stats = ort_fusions.optimize_for_ort(ir.load(str(plain)))
        fused = ", ".join(f"{count} {name}" for name, count in stats.items() if count)
        with _written(target) as tmp:
            ir.save(model, tmp, external_data=f"{tmp.name}.data" if large else None)
            if large:  # the graph names its data file: keep the name it will have after the rename
                _rename_external(tmp, target)
    finally:
        for leftover in (plain, plain.with_name(plain.name + ".data")):
            leftover.unlink(missing_ok=True)
    progress(f"fused ({fused or 'nothing to fuse'}) -> {target} in {time.perf_counter() - started:.1f}s")


def _large(cross_encoder: Any) -> bool:
    return sum(p.numel() * p.element_size() for p in cross_encoder.parameters()) > _EXTERNAL_DATA_BYTES


def _rename_external(tmp: Path, target: Path) -> None:
    """Point ``tmp``'s graph at ``target``'s data file name, and put the data there (before the graph lands)."""
    import onnx

    model = onnx.load(str(tmp), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = f"{target.name}.data"
    os.replace(tmp.with_name(f"{tmp.name}.data"), target.with_name(f"{target.name}.data"))
    onnx.save(model, str(tmp))


@contextlib.contextmanager
def _written(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``, renamed to it when the block succeeds (removed when it fails)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        data = tmp.with_name(f"{tmp.name}.data")
        if data.exists():
            os.replace(data, target.with_name(f"{target.name}.data"))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(f"{tmp.name}.data").unlink(missing_ok=True)


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' own chatter (torch.onnx's warnings, onnxscript's pass-by-pass INFO lines, the quantizer's
    advice on the root logger) says nothing about this model; the export's own progress lines say what happens."""
    chatty = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [logger.level for logger in chatty]
    root = logging.getLogger()
    only_errors = _ErrorsOnly()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in chatty:
            logger.setLevel(logging.ERROR)
        root.addFilter(only_errors)
        try:
            yield
        finally:
            root.removeFilter(only_errors)
            for logger, level in zip(chatty, levels, strict=True):
                logger.setLevel(level)


class OnnxForward:
    """The forward pass on an exported file: features (tensors from ``CrossEncoder.preprocess``) to logits."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # as many as torch would use, so the backends compare fairly
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, features: dict[str, Any]) -> torch.Tensor:
        feeds = {name: features[name].numpy() for name in self.inputs}
        return torch.from_numpy(self.session.run(None, feeds)[0])
