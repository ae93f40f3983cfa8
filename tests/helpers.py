"""Helpers shared by the test modules (importable as ``helpers``: tests/ is on sys.path)."""

from __future__ import annotations

from typing import Any

from agentic.inference.base import Completion, InferenceBackend, InferenceRequest, TextDelta
from agentic.types import ToolDefinition

__all__ = ["TRENDING", "collect", "schema_tool"]


async def collect(
    backend: InferenceBackend, request: InferenceRequest
) -> tuple[list[str], Completion]:
    """Run a stream to its end: the text deltas, and the one Completion that must come last."""
    deltas: list[str] = []
    final: Completion | None = None
    async for item in backend.stream(request):
        assert final is None, "nothing may follow the Completion"
        if isinstance(item, TextDelta):
            deltas.append(item.text)
        else:
            final = item
    assert final is not None, "the stream ended without a Completion"
    return deltas, final


def schema_tool(
    name: str, description: str, props: dict[str, Any], required: list[str]
) -> ToolDefinition:
    """A custom tool from JSON-schema properties."""
    return ToolDefinition.from_json_schema(
        name, {"type": "object", "properties": props, "required": required}, description
    )


TRENDING = schema_tool(
    "trending_songs",
    "Returns the trending songs on a Music site",
    {
        "n": {"type": "int", "description": "The number of songs to return"},
        "genre": {"type": "str", "description": "The genre of the songs to return"},
    },
    ["n"],
)
"""The reference doc's example tool (§3)."""
