"""Knowledge of the Llama 3.x family as pure functions: prompt format, tool calls, tokenizer."""

from __future__ import annotations

from agentic.llama.models import (
    GUARD_CATEGORIES_S1_S13,
    GUARD_CATEGORIES_S1_S14,
    ModelSpec,
    known_models,
    register_model,
    resolve_model,
)
from agentic.llama.prompt import (
    MessageLike,
    PromptCache,
    PromptCacheStats,
    assemble_messages,
    format_base,
    format_dialog,
    format_message,
    render_prompt,
    resolve_tool_format,
)
from agentic.llama.system_prompts import format_code_interpreter_result
from agentic.llama.tokenizer import StreamDecoder, Tokenizer, get_tokenizer
from agentic.llama.tokens import escape_special_tokens
from agentic.llama.tool_calls import (
    StreamEvent,
    StreamingToolCallParser,
    TextChunk,
    ToolCallChunk,
    encode_tool_call,
    opens_like_call,
    parse_completion,
)

__all__ = [
    "GUARD_CATEGORIES_S1_S13",
    "GUARD_CATEGORIES_S1_S14",
    "MessageLike",
    "ModelSpec",
    "PromptCache",
    "PromptCacheStats",
    "StreamDecoder",
    "StreamEvent",
    "StreamingToolCallParser",
    "TextChunk",
    "Tokenizer",
    "ToolCallChunk",
    "assemble_messages",
    "encode_tool_call",
    "escape_special_tokens",
    "format_base",
    "format_code_interpreter_result",
    "format_dialog",
    "format_message",
    "get_tokenizer",
    "known_models",
    "opens_like_call",
    "parse_completion",
    "register_model",
    "render_prompt",
    "resolve_model",
    "resolve_tool_format",
]
