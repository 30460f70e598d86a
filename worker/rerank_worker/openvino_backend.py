"""OpenVINO for an encoder cross-encoder: the ONNX exporter's plain graph, converted to OpenVINO's own format.

sentence-transformers' own OpenVINO backend goes through optimum-intel, which pins transformers < 5.6 while
this project's lock has transformers 5.25: the two cannot share one environment. OpenVINO's runtime alone
(the ``openvino`` package, no transformers pin) reads the plain ONNX graph that
:func:`rerank_worker.onnx_backend.export_graph` writes, so it needs no optimum. Only float32 is offered: OpenVINO's
int8 needs nncf, and was measured slower than torch on this project's 2-core AVX2 machines.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from rerank_worker.model_source import BackendUnavailable
from rerank_worker.onnx_backend import Progress, export_graph

#: The file each variant is saved as (with its weights in the .bin of the same name).
FILES = {"optimized": "openvino_model.xml"}


def export(cross_encoder: Any, folder: Path, variant: str, progress: Progress) -> Path:
    """Write the float32 OpenVINO model into ``folder`` (renamed into place, weights first); returns its .xml."""
    if variant not in FILES:
        raise BackendUnavailable(
            f"RERANK_BACKEND=openvino offers no {variant} variant (its int8 needs nncf, and ran slower than torch "
            "on a 2-core AVX2 CPU): use RERANK_BACKEND=onnx with RERANK_BACKEND_VARIANT=int8, or the optimized variant"
        )
    import openvino as ov

    target = folder / FILES[variant]
    plain = folder / f".plain-{os.getpid()}.onnx"
    tmp = folder / f".{target.stem}.{os.getpid()}.xml"
    started = time.perf_counter()
    try:
        export_graph(cross_encoder, plain, progress)
        progress("converting the graph to OpenVINO")
        ov.save_model(ov.convert_model(str(plain)), str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp, target)
    finally:
        for leftover in (plain, plain.with_name(plain.name + ".data"), tmp, tmp.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)
    progress(f"OpenVINO model written -> {target} in {time.perf_counter() - started:.1f}s")
    return target


class OpenVinoForward:
    """The forward pass on an OpenVINO model compiled for the CPU, in float32 (OpenVINO would otherwise pick
    bfloat16 on CPUs that have it, and move the scores)."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        self.compiled = ov.Core().compile_model(
            str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        )
        self.inputs = [port.get_any_name() for port in self.compiled.inputs]
        self.output = self.compiled.output(0)

    def __call__(self, features: dict[str, Any]) -> torch.Tensor:
        feeds = {name: features[name].numpy() for name in self.inputs}
        return torch.from_numpy(self.compiled(feeds)[self.output].copy())
