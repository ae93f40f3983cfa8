"""Tiny Prompt Guard checkpoints for the tests (importable as ``shield_fixtures``).

No Prompt Guard weights can be downloaded here, so the tests build a DeBERTa-v2 sequence
classifier the size of a toy, with the real label config of Prompt Guard 1 (BENIGN / INJECTION /
JAILBREAK) or 2 (BENIGN / MALICIOUS) and a real DeBERTa-v2 (Unigram) tokenizer, saved with
``save_pretrained`` and loaded back through ``AutoModelForSequenceClassification``.

Random weights give arbitrary scores, so a few are set by hand to give the classifier one
observable rule: a window containing :data:`INJECTION_WORD` scores as an injection, one containing
:data:`JAILBREAK_WORD` as a jailbreak (both as malicious for version 2), anything else as benign
with fixed probabilities (softmax of the head's bias). How: word embeddings are zero in three
dimensions except for the trigger words; attention is uniform (zero query and key weights) with an
identity value projection, so the [CLS] position receives the window's mean embedding; the
feed-forward block adds nothing; the pooler is the identity; the classifier reads the trigger
dimensions with a large weight.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Tokenizer

__all__ = [
    "BENIGN_BIAS",
    "FILLER",
    "INJECTION_WORD",
    "JAILBREAK_WORD",
    "benign_probabilities",
    "build_prompt_guard",
]

INJECTION_WORD = "zqxinject"
JAILBREAK_WORD = "zqxjail"
FILLER = "hello"
"""One token per occurrence (with its leading space), to place a trigger at a known token."""
BENIGN_BIAS = 2.0

_WORDS = [
    FILLER,
    "world",
    "the",
    "weather",
    "is",
    "sunny",
    "ignore",
    "previous",
    "instructions",
    "please",
    "summarize",
    INJECTION_WORD,
    JAILBREAK_WORD,
]
_HIDDEN = 16
_GAIN = 5000.0
_LABELS: dict[int, dict[int, str]] = {
    1: {0: "BENIGN", 1: "INJECTION", 2: "JAILBREAK"},
    2: {0: "BENIGN", 1: "MALICIOUS"},
}


def benign_probabilities(version: Literal[1, 2]) -> list[float]:
    """The label probabilities of a window without a trigger word."""
    logits = [BENIGN_BIAS] + [0.0] * (len(_LABELS[version]) - 1)
    total = sum(math.exp(x) for x in logits)
    return [math.exp(x) / total for x in logits]


def _tokenizer() -> Any:
    vocab: list[tuple[str, float]] = [
        ("[PAD]", 0.0),
        ("[UNK]", 0.0),
        ("[CLS]", 0.0),
        ("[SEP]", 0.0),
        ("[MASK]", 0.0),
        ("▁", -3.0),
    ]
    vocab += [(f"▁{w}", -5.0) for w in _WORDS]
    vocab += [(c, -10.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"]
    vocab += [(c, -10.0) for c in ".,;:!?'\"()-"]
    tokenizer = DebertaV2Tokenizer(vocab=vocab)
    tokenizer.model_max_length = 512
    return tokenizer


def _config(vocab_size: int, version: Literal[1, 2]) -> DebertaV2Config:
    id2label = _LABELS[version]
    return DebertaV2Config(
        vocab_size=vocab_size,
        hidden_size=_HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=_HIDDEN,
        max_position_embeddings=512,
        relative_attention=False,
        position_biased_input=False,
        pos_att_type=[],
        type_vocab_size=0,
        pooler_hidden_act="gelu",
        pooler_dropout=0.0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-7,
        pad_token_id=0,
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
        architectures=["DebertaV2ForSequenceClassification"],
    )


def _set_weights(model: Any, tokenizer: Any, version: Literal[1, 2]) -> None:
    eye = torch.eye(_HIDDEN)
    with torch.no_grad():
        words = model.deberta.embeddings.word_embeddings.weight
        words[:, :3] = 0.0  # dims 0-2 carry only the triggers (2 balances them to mean zero)
        words[:, 3:] -= words[:, 3:].mean(dim=1, keepdim=True)
        for dim, word in ((0, INJECTION_WORD), (1, JAILBREAK_WORD)):
            row = tokenizer.convert_tokens_to_ids(f"▁{word}")
            words[row] = 0.0
            words[row, dim], words[row, 2] = 1.0, -1.0
        layer = model.deberta.encoder.layer[0]
        attention = layer.attention
        for proj in (attention.self.query_proj, attention.self.key_proj):
            proj.weight.zero_()
            proj.bias.zero_()
        for linear in (attention.self.value_proj, attention.output.dense, model.pooler.dense):
            linear.weight.copy_(eye)
            linear.bias.zero_()
        layer.output.dense.weight.zero_()
        layer.output.dense.bias.zero_()
        head = model.classifier
        head.weight.zero_()
        head.bias.zero_()
        head.bias[0] = BENIGN_BIAS
        if version == 1:
            head.weight[1, 0] = head.weight[2, 1] = _GAIN
        else:
            head.weight[1, 0] = head.weight[1, 1] = _GAIN


def build_prompt_guard(directory: Path, version: Literal[1, 2]) -> Path:
    """Write a tiny Prompt Guard ``version`` checkpoint into ``directory``; returns it."""
    torch.manual_seed(0)
    tokenizer = _tokenizer()
    model = DebertaV2ForSequenceClassification(_config(len(tokenizer), version))
    _set_weights(model, tokenizer, version)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
