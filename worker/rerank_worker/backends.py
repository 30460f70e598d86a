"""Which runtime runs the model's forward pass (``RERANK_BACKEND``), and where its exported files live.

``torch`` runs the CrossEncoder as loaded. ``onnx`` and ``openvino`` run an exported file of the same model:
exported once, on the first start (or ahead of time by ``rerank-server model export``), into ``onnx/`` or
``openvino/`` in the model's folder when it is writable, else under ``~/.rerank-server/exports/``; later starts
load the file. An ``export.json`` beside the files records the source it was made from (the sizes and times of
the model's config and weights), so a changed model is exported again rather than served stale.

Tokenizing, prompts, truncation, chunking and the activation stay the CrossEncoder's on every backend: only the
forward call differs, so everything the worker does around it is the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerank_contract.defaults import EXPORT_DIR
from rerank_worker.model_source import BackendUnavailable

log = logging.getLogger(__name__)

#: What each backend needs installed, and the extra that installs it.
NEEDS = {"onnx": ("onnxruntime", "onnx", "onnxscript"), "openvino": ("openvino", "onnx", "onnxscript")}

Forward = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Attached:
    """The forward pass of a non-torch backend, and the file it runs (shown in /health and the start line)."""

    forward: Forward
    file: Path


def way_out(backend: str) -> str:
    return (
        f"export it where you can write with `rerank-server model export FOLDER --backend {backend}` "
        "and serve that folder, or set RERANK_BACKEND=torch"
    )


def require(backend: str) -> None:
    """Raise :class:`BackendUnavailable` (one line: what is missing, how to install it) when it is not installed."""
    import importlib.util

    missing = [name for name in NEEDS.get(backend, ()) if importlib.util.find_spec(name.split(".")[0]) is None]
    if missing:
        raise BackendUnavailable(
            f"RERANK_BACKEND={backend} needs {', '.join(missing)}, which is not installed: "
            f"pip install 'rerank-server[worker,{backend}]' (or set RERANK_BACKEND=torch)"
        )


def check_exportable(cross_encoder: Any, model: str, backend: str) -> None:
    """An encoder classifier (BERT, XLM-RoBERTa, ... with a one-label head) exports; anything else fails the start."""
    from sentence_transformers.base.modules.transformer import Transformer

    modules = list(cross_encoder)
    first = modules[0] if modules else None
    if len(modules) == 1 and isinstance(first, Transformer) and first.transformer_task == "sequence-classification":
        return
    kind = (
        "a decoder reranker (a causal LM scored by LogitScore, such as Qwen3-Reranker)"
        if len(modules) > 1
        else (f"a {type(first).__name__} model")
    )
    raise BackendUnavailable(
        f"RERANK_BACKEND={backend} cannot serve {model}: it is {kind}, and the exporter takes encoder "
        "cross-encoders (a sequence-classification head) only; serve it with RERANK_BACKEND=torch"
    )


def fingerprint(model: str) -> dict[str, list[int]]:
    """Size and modification time of the model's config and weight files: a new model version changes them."""
    folder = source_folder(model)
    if folder is None:
        return {}
    return {
        p.name: [p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(folder.iterdir())
        if p.is_file() and (p.name == "config.json" or p.suffix in (".safetensors", ".bin"))
    }


def source_folder(model: str) -> Path | None:
    """The folder the weights were read from: the model's own, or its snapshot in the Hugging Face cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json")
    return Path(cached).parent if isinstance(cached, str) else None


def candidates(model: str, backend: str) -> list[Path]:
    """Where the backend's files may be, in order: the model's folder, then this user's export folder."""
    home = Path(EXPORT_DIR).expanduser()
    path = Path(model).expanduser()
    if path.is_dir():
        path = path.resolve()
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
        return [path / backend, home / f"{path.name}-{digest}" / backend]
    return [home / model.replace("/", "--") / backend]


class Manifest:
    """``export.json``: the source the folder's files were exported from, and which variant is which file."""

    NAME = "export.json"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / self.NAME
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def file(self, variant: str, source: dict[str, list[int]]) -> Path | None:
        """The variant's file when it was exported from this very source and is still there."""
        name = self.data.get("files", {}).get(variant)
        if name is None or self.data.get("source") != source or not (self.folder / name).exists():
            return None
        return self.folder / name

    def drop_stale(self, source: dict[str, list[int]]) -> None:
        """Remove the files exported from another version of the model: the exporters build on what they find."""
        if self.data.get("source") == source:
            return
        for name in self.data.get("files", {}).values():
            for stale in (self.folder / name, self.folder / f"{name}.data", (self.folder / name).with_suffix(".bin")):
                stale.unlink(missing_ok=True)

    def record(self, variant: str, file: Path, source: dict[str, list[int]]) -> None:
        files = self.data.get("files", {}) if self.data.get("source") == source else {}
        self.data = {"source": source, "files": {**files, variant: file.name}}
        tmp = self.path.with_name(f".{self.NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)


def find(model: str, backend: str, variant: str) -> Path | None:
    """The exported file for this model, backend and variant if one is current, wherever it is."""
    source = fingerprint(model)
    for folder in candidates(model, backend):
        found = Manifest(folder).file(variant, source)
        if found is not None:
            return found
    return None


def writable_folder(model: str, backend: str) -> Path:
    """The first place the export can be written; :class:`BackendUnavailable` naming both reasons otherwise."""
    reasons = []
    for folder in candidates(model, backend):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            return folder
        except OSError as exc:
            reasons.append(f"{folder}: {exc.strerror or exc}")
    raise BackendUnavailable(
        f"RERANK_BACKEND={backend} cannot save the export of {model} ({'; '.join(reasons)}); {way_out(backend)}"
    )


def export(
    cross_encoder: Any, model: str, backend: str, variant: str, progress: Callable[[str], None]
) -> tuple[Path, bool]:
    """The variant's file, exported now unless a current one exists; and whether it was exported now."""
    found = find(model, backend, variant)
    if found is not None:
        return found, False
    folder = writable_folder(model, backend)
    source = fingerprint(model)
    manifest = Manifest(folder)
    manifest.drop_stale(source)
    if backend == "onnx":
        from rerank_worker import onnx_backend

        file = onnx_backend.export(cross_encoder, folder, variant, progress, reuse=manifest.file("optimized", source))
    else:
        from rerank_worker import openvino_backend

        file = openvino_backend.export(cross_encoder, folder, variant, progress)
    manifest.record(variant, file, source)
    return file, True


def attach(cross_encoder: Any, model: str, backend: str, variant: str, *, threads: int) -> Attached:
    """The forward pass on ``backend``'s file of ``model`` (exported now if needed): :class:`BackendUnavailable`
    when it cannot be had (a package missing, a model the exporter does not take, nowhere to write)."""
    require(backend)
    check_exportable(cross_encoder, model, backend)
    try:
        file, exported = export(cross_encoder, model, backend, variant, lambda line: log.info("%s", line))
    except BackendUnavailable:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailable(
            f"RERANK_BACKEND={backend} cannot export {model} ({type(exc).__name__}: {first}); set RERANK_BACKEND=torch"
        ) from exc
    if not exported:
        log.info("loading the %s %s file exported before: %s", backend, variant, file)
    if backend == "onnx":
        from rerank_worker.onnx_backend import OnnxForward

        return Attached(OnnxForward(file, threads), file)
    from rerank_worker.openvino_backend import OpenVinoForward

    return Attached(OpenVinoForward(file, threads), file)
