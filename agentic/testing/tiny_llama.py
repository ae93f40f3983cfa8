"""A tiny random-weight Llama 3 checkpoint for tests, and a logits processor that scripts it.

The checkpoint has the real Llama 3 vocabulary (128,256 ids) and special-token ids but a few
thousand parameters per layer, so :class:`~agentic.inference.transformers_local.TransformersLocal`
runs it on a CPU in milliseconds per token. It holds config, weights (safetensors) and a
``generation_config.json`` and no tokenizer files: the backend tokenizes with our own tokenizer.

Random weights produce random tokens; :func:`scripted_tokens` makes the output deterministic
through the backend's ordinary ``logits_processors`` hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentic.errors import ConfigError, MissingDependencyError
from agentic.llama.tokenizer import get_tokenizer
from agentic.llama.tokens import SPECIAL_TOKEN_IDS

if TYPE_CHECKING:
    import torch

    from agentic.inference.transformers_local import TokenLogitsProcessor

__all__ = ["build_tiny_llama", "scripted_tokens"]

BOS_ID = SPECIAL_TOKEN_IDS["<|begin_of_text|>"]
EOS_IDS = [SPECIAL_TOKEN_IDS[t] for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
PAD_ID = SPECIAL_TOKEN_IDS["<|finetune_right_pad_id|>"]


def build_tiny_llama(
    path: Path,
    *,
    seed: int = 0,
    hidden_size: int = 16,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    intermediate_size: int = 32,
    max_position_embeddings: int = 2048,
) -> Path:
    """Write a random Llama 3 checkpoint (fixed ``seed``) to ``path`` and return ``path``.

    Shaped like Llama 3.2 1B (tied embeddings, grouped-query attention, llama3 RoPE scaling) at
    a toy size; the generation config copies Meta's (sampling at 0.6 / 0.9) so tests see that
    request settings override it.
    """
    try:
        import torch
        from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    except ImportError as exc:
        raise MissingDependencyError("transformers", "local") from exc
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ConfigError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")
    config = LlamaConfig(
        vocab_size=get_tokenizer().vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        rope_parameters=_rope(max_position_embeddings),
        bos_token_id=BOS_ID,
        eos_token_id=EOS_IDS,
        pad_token_id=PAD_ID,
        tie_word_embeddings=True,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    GenerationConfig(  # type: ignore[no-untyped-call]  # unannotated __init__
        bos_token_id=BOS_ID,
        eos_token_id=EOS_IDS,
        pad_token_id=PAD_ID,
        do_sample=True,
        temperature=0.6,
        top_p=0.9,
    ).save_pretrained(path)
    return path


def _rope(max_position_embeddings: int) -> dict[str, Any]:
    return {
        "rope_type": "llama3",
        "rope_theta": 500_000.0,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": max(1, max_position_embeddings // 16),
    }


def scripted_tokens(script: str | Sequence[int]) -> TokenLogitsProcessor:
    """A logits processor that makes any model emit ``script`` first, then run free.

    ``script`` is raw model text (special tokens such as ``<|eom_id|>`` allowed) or token ids.
    Only the script's token is left possible at each of its steps, so sampling settings cannot
    change it.
    """
    ids = tuple(get_tokenizer().encode(script) if isinstance(script, str) else script)
    if bad := [t for t in ids if not 0 <= t < get_tokenizer().vocab_size]:
        raise ConfigError(f"scripted_tokens: ids {bad} are outside the Llama 3 vocabulary")

    def process(generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        step = len(generated)
        if step < len(ids):
            forced = ids[step]
            logits.fill_(float("-inf"))
            logits[forced] = 0.0
        return logits

    return process
