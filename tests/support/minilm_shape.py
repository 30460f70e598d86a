"""A cross-encoder of MiniLM-L6's shape (6 layers, hidden 384, 12 heads: cross-encoder/ms-marco-MiniLM-L-6-v2's),
random weights, the tiny model's tokenizer: the real model's graph, built offline in a second, so the backends'
exporters and fusions meet it in the suite."""

from __future__ import annotations

from pathlib import Path


def build(folder: Path, *, tokenizer_from: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(str(folder))
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(str(folder))
    return folder
