"""Build a tiny cross-encoder offline and train it until it ranks relevant passages first.

No weights can be downloaded here, so the suite makes its own model: a 2-layer BERT with a word
vocabulary, trained for a few seconds with BCE on a handful of topics. The result is a real
CrossEncoder folder that the worker loads like any Hugging Face model.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS: dict[str, list[str]] = {
    "machine learning": ["deep learning", "neural networks", "gradient descent training", "model inference"],
    "cooking": ["cooking recipes", "baking bread", "kitchen knives", "pasta sauce"],
    "astronomy": ["distant galaxies", "telescope observations", "planets and stars", "black holes"],
    "gardening": ["growing tomatoes", "garden soil", "watering plants", "pruning roses"],
    "finance": ["stock market", "interest rates", "bank loans", "investment portfolio"],
}
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_LENGTH = 64


def _vocab() -> list[str]:
    words = {w for q, docs in TOPICS.items() for text in [q, *docs] for w in text.split()}
    words |= set("abcdefghijklmnopqrstuvwxyz0123456789.,!?")
    return SPECIAL + sorted(words)


def build(folder: Path, *, seed: int = 0, steps: int = 150) -> Path:
    """Write a trained tiny CrossEncoder to ``folder`` and return it."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": MAX_LENGTH})
    )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.model_max_length = MAX_LENGTH

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        num_labels=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForSequenceClassification(config)

    pairs: list[tuple[str, str, float]] = []
    for query in TOPICS:
        for other, other_docs in TOPICS.items():
            for doc in other_docs:
                pairs.append((query, doc, 1.0 if other == query else 0.0))
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(steps):
        batch = rng.sample(pairs, 32)
        enc = tokenizer([p[0] for p in batch], [p[1] for p in batch], padding=True, return_tensors="pt")
        logits = model(**enc).logits.squeeze(-1)
        loss = loss_fn(logits, torch.tensor([p[2] for p in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


if __name__ == "__main__":
    import sys

    print(build(Path(sys.argv[1])))
