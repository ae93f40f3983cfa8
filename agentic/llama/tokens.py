"""Llama 3 special tokens and their ids (base vocabulary 128,000 + 256 special tokens)."""

from __future__ import annotations

__all__ = [
    "BEGIN_OF_TEXT",
    "END_HEADER",
    "END_OF_MESSAGE",
    "END_OF_TEXT",
    "END_OF_TURN",
    "IMAGE",
    "PYTHON_TAG",
    "SPECIAL_TOKENS",
    "SPECIAL_TOKEN_IDS",
    "START_HEADER",
    "STOP_TOKENS",
    "escape_special_tokens",
]

BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
END_OF_MESSAGE = "<|eom_id|>"
END_OF_TURN = "<|eot_id|>"
PYTHON_TAG = "<|python_tag|>"
IMAGE = "<|image|>"

NUM_BASE_TOKENS = 128_000
NUM_SPECIAL_TOKENS = 256

_NAMED = [
    BEGIN_OF_TEXT,
    END_OF_TEXT,
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    START_HEADER,
    END_HEADER,
    END_OF_MESSAGE,
    END_OF_TURN,
    PYTHON_TAG,
    IMAGE,
]
SPECIAL_TOKENS: tuple[str, ...] = tuple(
    _NAMED
    + [f"<|reserved_special_token_{2 + i}|>" for i in range(NUM_SPECIAL_TOKENS - len(_NAMED))]
)
SPECIAL_TOKEN_IDS: dict[str, int] = {
    tok: NUM_BASE_TOKENS + i for i, tok in enumerate(SPECIAL_TOKENS)
}
STOP_TOKENS: tuple[str, ...] = (END_OF_MESSAGE, END_OF_TURN)
"""What instruct models stop on: ``<|eom_id|>`` (run the tool, continue) and ``<|eot_id|>``."""

EOM_ID = SPECIAL_TOKEN_IDS[END_OF_MESSAGE]
EOT_ID = SPECIAL_TOKEN_IDS[END_OF_TURN]
VISION_IMAGE_ID = 128_256
"""``ChatFormat`` rewrites ``<|image|>`` to this id in model input (the HF Vision vocabulary)."""


def escape_special_tokens(text: str) -> str:
    """Make text that came from outside (tool output, documents) unable to forge special tokens.

    ``<|`` becomes ``<\\|``: the tokenizer then sees ordinary characters, and a reader still sees
    what was there. Applied wherever untrusted text enters a prompt.
    """
    return text.replace("<|", "<\\|") if "<|" in text else text
