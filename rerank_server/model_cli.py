"""``rerank-server model``: get a model folder to serve without the 2.3 GB default download, and export it.

``build FOLDER`` trains a toy cross-encoder offline in a few seconds (a 2-layer BERT that knows the
words of five topics: machine learning, cooking, astronomy, gardening, finance), enough to see the
service rank. ``fetch [ID] FOLDER`` downloads a small real one (``cross-encoder/ms-marco-MiniLM-L-6-v2``,
about 90 MB) from the Hugging Face hub into a folder. Either folder is then ``--model FOLDER``.
``export FOLDER --backend onnx|openvino [--quantize int8]`` makes the files RERANK_BACKEND serves ahead of
time, where a worker will look for them, and reports how far each file's scores are from torch's.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from rerank_contract.defaults import EXIT_STARTUP_FAILED, EXIT_USAGE

#: What ``fetch`` downloads when no id is given: a real cross-encoder of about 90 MB.
SMALL_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"

#: The toy model's whole world: each query, and the passages that are about it.
TOPICS: dict[str, list[str]] = {
    "machine learning": ["deep learning", "neural networks", "gradient descent training", "model inference"],
    "cooking": ["cooking recipes", "baking bread", "kitchen knives", "pasta sauce"],
    "astronomy": ["distant galaxies", "telescope observations", "planets and stars", "black holes"],
    "gardening": ["growing tomatoes", "garden soil", "watering plants", "pruning roses"],
    "finance": ["stock market", "interest rates", "bank loans", "investment portfolio"],
}
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_MAX_LENGTH = 64


def _vocab() -> list[str]:
    words = {w for q, docs in TOPICS.items() for text in [q, *docs] for w in text.split()}
    words |= set("abcdefghijklmnopqrstuvwxyz0123456789.,!?")
    return _SPECIAL + sorted(words)


def build(folder: Path, *, seed: int = 0, steps: int = 150) -> Path:
    """Write a trained toy CrossEncoder to ``folder`` (needs torch and transformers) and return it."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": _MAX_LENGTH})
    )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.model_max_length = _MAX_LENGTH
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=_MAX_LENGTH,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    config.num_labels = 1  # one score per pair; set after, as transformers 5's typed config has no such field
    model = BertForSequenceClassification(config)
    pairs = [
        (query, doc, 1.0 if other == query else 0.0)
        for query in TOPICS
        for other, docs in TOPICS.items()
        for doc in docs
    ]
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(steps):
        batch = rng.sample(pairs, 32)
        enc = tokenizer([p[0] for p in batch], [p[1] for p in batch], padding=True, return_tensors="pt")
        loss = loss_fn(model(**enc).logits.squeeze(-1), torch.tensor([p[2] for p in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def fetch(model_id: str, folder: Path) -> Path:
    """Download ``model_id`` from the Hugging Face hub into ``folder`` and return it."""
    from huggingface_hub import snapshot_download

    snapshot_download(model_id, local_dir=str(folder))
    return folder


def _fail(problem: str) -> int:
    print(f"rerank-server model: {problem}", file=sys.stderr)
    return EXIT_USAGE


def _build(args: argparse.Namespace, _settings: object) -> int:
    try:
        build(args.folder)
    except ImportError as exc:
        return _fail(f"building a model needs torch and transformers ({exc}): pip install -e '.[worker]'")
    except OSError as exc:
        return _fail(f"cannot write {args.folder}: {exc.strerror or exc}")
    print(f"built a toy cross-encoder in {args.folder}; serve it with: rerank-server up --model {args.folder}")
    print(f"it knows these topics only: {', '.join(TOPICS)}")
    return 0


def _fetch(args: argparse.Namespace, _settings: object) -> int:
    try:
        fetch(args.model_id, args.folder)
    except ImportError:
        return _fail("fetching a model needs huggingface_hub: pip install -e '.[worker]'")
    except Exception as exc:  # the hub client raises many kinds (offline, no such repo, HTTP errors)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _fail(
            f"cannot download {args.model_id} ({type(exc).__name__}: {first}); without a connection, "
            f"`rerank-server model build {args.folder}` makes a toy model offline"
        )
    print(f"downloaded {args.model_id} to {args.folder}; serve it with: rerank-server up --model {args.folder}")
    return 0


def _pairs(path: Path | None) -> list[tuple[str, list[str]]]:
    """The requests the agreement report scores both ways: the user's JSONL items, else every toy topic against
    all twenty passages."""
    if path is None:
        passages = [p for docs in TOPICS.values() for p in docs]
        return [(query, passages) for query in TOPICS]
    from rerank_server.bulk_cli import read_items

    return [(item.query, item.candidates) for item in read_items(path)]


def _export(args: argparse.Namespace, _settings: object) -> int:
    """Export (or find) each variant, then score the pairs with torch and with each file, and print the report."""
    from rerank_contract.jobs import ScoreMode
    from rerank_server import agreement
    from rerank_server.bulk_cli import InputError
    from rerank_worker import backends
    from rerank_worker.model_source import ModelUnavailable
    from rerank_worker.runtime import Reranker

    model = str(args.folder)
    variants = ["optimized", *([args.quantize] if args.quantize else [])]

    def progress(line: str) -> None:
        print(f"export: {line}", file=sys.stderr, flush=True)

    try:
        requests = _pairs(args.pairs)
        backends.require(args.backend)
        reference = Reranker(model, device="cpu", batch_size=args.batch_size, max_length=None)
        backends.check_exportable(reference.model, model, args.backend)
        for variant in variants:
            file, made = backends.export(reference.model, model, args.backend, variant, progress)
            print(f"{args.backend} {variant}: {file}" + ("" if made else " (exported before, current)"))
        want = reference.score_many(requests, ScoreMode.ACTIVATED).scores
        for variant in variants:
            progress(f"scoring {sum(len(c) for _, c in requests)} pairs with torch and the {variant} file")
            served = Reranker(
                model,
                device="cpu",
                batch_size=args.batch_size,
                max_length=None,
                backend=args.backend,
                backend_variant=variant,
            )
            found = agreement.compare(served.score_many(requests, ScoreMode.ACTIVATED).scores, want)
            print("\n".join(found.lines(f"{args.backend} {variant}", "torch float32")))
    except InputError as exc:
        return _fail(str(exc))
    except ModelUnavailable as exc:
        print(f"rerank-server model export: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    env = f"RERANK_BACKEND={args.backend} RERANK_BACKEND_VARIANT={variants[-1]}"
    print(f"serve it with: {env} rerank-server up --model {model}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``model build`` and ``model fetch`` to the ``rerank-server`` parser."""
    parser = sub.add_parser("model", help="get a small model folder to try the service with (no 2.3 GB download)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build_parser = actions.add_parser(
        "build", help="train a toy cross-encoder offline in seconds (five topics only: for trying it out)"
    )
    build_parser.add_argument("folder", type=Path, help="where to write it, e.g. ./models/tiny")
    build_parser.set_defaults(func=_build)
    fetch_parser = actions.add_parser("fetch", help=f"download a small real model (default {SMALL_MODEL}, ~90 MB)")
    fetch_parser.add_argument(
        "model_id", nargs="?", default=SMALL_MODEL, help=f"Hugging Face id (default {SMALL_MODEL})"
    )
    fetch_parser.add_argument("folder", type=Path, help="where to put it, e.g. ./models/minilm")
    fetch_parser.set_defaults(func=_fetch)
    export_parser = actions.add_parser(
        "export",
        help="make the onnx/openvino files RERANK_BACKEND serves, ahead of time, and report their scores against torch",
    )
    export_parser.add_argument("folder", type=Path, help="the model folder (or Hugging Face id) the worker serves")
    export_parser.add_argument("--backend", choices=["onnx", "openvino"], required=True)
    export_parser.add_argument(
        "--quantize",
        choices=["int8"],
        help="also make the int8 variant (onnx: dynamic int8, faster on a CPU, scores move: read the report)",
    )
    export_parser.add_argument(
        "--pairs",
        type=Path,
        metavar="JSONL",
        help="the requests the report scores both ways, one {query, candidates} object per line (as `bulk` reads); "
        "default: the toy model's five topics against its twenty passages",
    )
    export_parser.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass while scoring")
    export_parser.set_defaults(func=_export)
