"""Tool calls in Llama's own syntax: encoding calls into history, parsing them out of raw text."""

from __future__ import annotations

import json
from typing import Any

from agentic.types import BuiltinTool, ToolCall, ToolPromptFormat

__all__ = ["encode_tool_call"]


def _py_value(value: Any) -> str:
    """A value as Llama 3.2's pythonic calls write it (strings unescaped, dicts as ``{k=v}``)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return f"[{', '.join(_py_value(v) for v in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_py_value(v)}" for k, v in value.items()) + "}"
    return str(value)  # int, float, bool, None: as Python prints them


def encode_tool_call(call: ToolCall, fmt: ToolPromptFormat) -> str:
    """How a past call appears in an assistant message of the history (no separators)."""
    builtin = call.builtin
    if builtin is BuiltinTool.code_interpreter:
        return str(call.arguments.get("code", ""))
    if builtin is not None:
        return f'{builtin.value}.call(query="{call.arguments.get("query", "")}")'
    if fmt is ToolPromptFormat.json:
        return json.dumps({"type": "function", "name": call.tool_name, "parameters": call.arguments})
    if fmt is ToolPromptFormat.function_tag:
        return f"<function={call.tool_name}>{json.dumps(call.arguments)}</function>"
    args = ", ".join(f"{k}={_py_value(v)}" for k, v in call.arguments.items())
    return f"[{call.tool_name}({args})]"
