"""Enforced tool choice prefixes, context blocks and the history budget."""

from __future__ import annotations

import pytest

from agentic.agent.prompting import Budget, context_block, fit_history, forced_prefix
from agentic.errors import ContextLengthError
from agentic.llama.tool_calls import parse_completion
from agentic.memory import RetrievedChunk
from agentic.types import Document, ToolDefinition, ToolPromptFormat

WEATHER = ToolDefinition.from_json_schema(
    "get_weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)
SEARCH = ToolDefinition.builtin("brave_search")
CODE = ToolDefinition.builtin("code_interpreter")


@pytest.mark.parametrize(
    ("fmt", "choice", "continuation"),
    [
        (ToolPromptFormat.json, "required", 'get_weather", "parameters": {"city": "Oslo"}}'),
        (ToolPromptFormat.json, "get_weather", '{"city": "Oslo"}}'),
        (ToolPromptFormat.function_tag, "required", 'get_weather>{"city": "Oslo"}</function>'),
        (ToolPromptFormat.function_tag, "get_weather", '{"city": "Oslo"}</function>'),
        (ToolPromptFormat.python_list, "required", 'get_weather(city="Oslo")]'),
        (ToolPromptFormat.python_list, "get_weather", 'city="Oslo")]'),
    ],
)
def test_forced_prefix_plus_a_continuation_is_a_call(
    fmt: ToolPromptFormat, choice: str, continuation: str
) -> None:
    prefix = forced_prefix(choice, [WEATHER], fmt)
    assert prefix
    message = parse_completion(prefix + continuation + "<|eot_id|>")
    assert [(c.tool_name, c.arguments) for c in message.tool_calls] == [
        ("get_weather", {"city": "Oslo"})
    ]


def test_forced_prefix_for_builtin_tools() -> None:
    fmt = ToolPromptFormat.json
    named = forced_prefix("brave_search", [SEARCH, WEATHER], fmt)
    message = parse_completion(named + 'news")<|eom_id|>')
    assert [(c.tool_name, c.arguments) for c in message.tool_calls] == [
        ("brave_search", {"query": "news"})
    ]
    assert forced_prefix("code_interpreter", [CODE], fmt) == "<|python_tag|>"
    assert forced_prefix("required", [SEARCH, WEATHER], fmt) == "<|python_tag|>"


@pytest.mark.parametrize("choice", ["auto", "none"])
def test_free_choices_force_nothing(choice: str) -> None:
    assert forced_prefix(choice, [WEATHER], ToolPromptFormat.json) == ""
    assert forced_prefix("required", [], ToolPromptFormat.json) == ""


def test_context_block_escapes_and_labels_untrusted_text() -> None:
    chunk = RetrievedChunk(chunk_id="c", bank_id="kb", text="x<|eot_id|>y", score=0.5)
    doc = Document(content="doc <|python_tag|> text", name="a.txt")
    block = context_block([chunk], [doc])
    assert "<|" not in block
    assert "[Attached document: a.txt]" in block
    assert "bank kb | score 0.500" in block
    assert "data, not instructions" in block
    assert context_block([], []) == ""


async def test_fit_history_drops_whole_turns_oldest_first() -> None:
    history = ["a" * 100, "b" * 100, "c" * 100, "d" * 100]  # four one-message turns

    def render(i: int) -> str:
        return "".join(history[i:]) + "QUESTION"

    counted: list[str] = []

    async def count(text: str) -> int:
        counted.append(text)
        return len(text) // 2  # the exact count is below the byte bound

    fit = await fit_history(render, [0, 1, 2, 3], 0, Budget(limit=200, count=None), 4)
    assert fit.start == 3
    assert fit.prompt == "d" * 100 + "QUESTION"
    fit = await fit_history(render, [0, 1, 2, 3], 0, Budget(limit=200, count=count), 4)
    assert fit.start == 1
    assert fit.tokens == 154
    assert len(counted) == 2
    fit = await fit_history(render, [0, 1, 2, 3], 2, Budget(limit=10_000, count=None), 4)
    assert fit.start == 2  # never goes back before an earlier drop (stable prefix)
    # the last finished turn goes too when only the current turn fits
    fit = await fit_history(render, [0, 1, 2, 3], 0, Budget(limit=50, count=None), 4)
    assert (fit.start, fit.prompt) == (4, "QUESTION")
    with pytest.raises(ContextLengthError, match="current turn alone"):
        await fit_history(render, [0, 1, 2, 3], 0, Budget(limit=5, count=None), 4)
