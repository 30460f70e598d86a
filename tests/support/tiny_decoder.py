"""Build a tiny Qwen3-Reranker-style decoder reranker offline, in both folder layouts.

sentence-transformers 6 loads a folder whose architecture ends in ``ForCausalLM`` as a causal LM plus a
``LogitScore`` module: score = logit("yes") - logit("no") at the last token of the chat-rendered
(instruction, query, document). :func:`build` writes such a folder the way the hub ships Qwen3-Reranker
(plain transformers: no ``modules.json``, so the activation defaults to Sigmoid); :func:`build_st` loads
it and saves it with sentence-transformers (``modules.json``, ``1_LogitScore``, activation Identity).
Weights are random: good for score equality and length rules, not for ranking quality.
"""

from __future__ import annotations

from pathlib import Path

#: Qwen3-Reranker's prompt layout; a ``system`` message (sentence-transformers' prompt) is the instruction.
CHAT_TEMPLATE = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    "{% for m in messages %}{% if m.role == 'system' %}<Instruct>: {{ m.content }}\n{% endif %}{% endfor %}"
    "<Query>: {{ messages | selectattr('role', 'eq', 'query') | map(attribute='content') | first }}\n"
    "<Document>: {{ messages | selectattr('role', 'eq', 'document') | map(attribute='content') | first }}"
    "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
)
#: A template that knows only chat roles: it cannot render a (query, document) pair.
CHAT_ONLY_TEMPLATE = (
    "{%- for m in messages %}{%- if m.role in ['user', 'assistant'] %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "<|im_end|>\n{%- endif %}{%- endfor %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MAX_POSITIONS = 512
CORPUS = [
    "yes no yes no Judge whether the Document meets the requirements based on the Query and the Instruct provided.",
    "Note that the answer can only be yes or no. <Instruct>: <Query>: <Document>: system user assistant think",
    "machine learning deep learning neural networks gradient descent training model inference",
    "cooking recipes baking bread kitchen knives pasta sauce astronomy distant galaxies black holes",
    "Given a web search query, retrieve relevant passages that answer the query. Find the code for it.",
    "yes\nno\nyes\nno\n",
]


def _tokenizer(template: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    split = (  # Qwen2's pre-tokenizer pattern
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=1
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=131072
    )
    tokenizer.chat_template = template
    assert all(len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1 for w in ("yes", "no"))
    return tokenizer


def build(folder: Path, *, template: str = CHAT_TEMPLATE, seed: int = 0, positions: int = MAX_POSITIONS) -> Path:
    """Write a random-weight Qwen3ForCausalLM with a reranker chat template to ``folder`` (the hub's layout)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(template)
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        architectures=["Qwen3ForCausalLM"],
    )
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def build_st(source: Path, folder: Path) -> Path:
    """The model of ``source`` saved by sentence-transformers (``modules.json``; its activation is Identity)."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(source), device="cpu")
    model.activation_fn = __import__("torch").nn.Identity()
    model.save_pretrained(str(folder))
    return folder


if __name__ == "__main__":
    import sys

    print(build(Path(sys.argv[1])))
