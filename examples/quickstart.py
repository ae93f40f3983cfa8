"""Quickstart: one tool-calling round trip with a Llama model on vLLM.

With ``VLLM_BASE_URL`` set (e.g. ``http://localhost:8000/v1``) this talks to your vLLM server;
otherwise it starts the scripted loopback server from ``agentic.testing`` so the same code runs
anywhere. The model asks for Brave search, we answer as the tool, the model answers the user.
"""

from __future__ import annotations

import asyncio
import os
import sys
from contextlib import ExitStack

from agentic.inference import Completion, InferenceRequest, TextDelta, VLLMServer
from agentic.llama import parse_completion
from agentic.testing import VLLMTestServer
from agentic.types import (
    AssistantMessage,
    Message,
    SamplingParams,
    ToolDefinition,
    ToolMessage,
    UserMessage,
)

MODEL = os.environ.get("AGENTIC_MODEL", "meta-llama/Llama-3.1-8B-Instruct")
SCRIPT = [
    '<|python_tag|>brave_search.call(query="tallest llama breed")<|eom_id|>',
    "The tallest llama breed is the Classic llama, up to 1.8 m at the head.<|eot_id|>",
]


async def ask(llm: VLLMServer, messages: list[Message]) -> AssistantMessage:
    """Stream one completion to stdout and parse it into an assistant message."""
    request = InferenceRequest(
        model=MODEL,
        messages=messages,
        tools=[ToolDefinition.builtin("brave_search")],
        sampling=SamplingParams(temperature=0, max_tokens=256),
        cache_key="quickstart",  # the conversation grows append-only: render only what is new
    )
    final: Completion | None = None
    async for item in llm.stream(request):
        if isinstance(item, TextDelta):
            print(item.text, end="", flush=True)
        else:
            final = item
    assert final is not None
    print(f"\n  [{final.stop_reason.value}, {final.usage.completion_tokens} tokens]")
    return parse_completion(final.text, model=MODEL, stop_reason=final.stop_reason)


async def main(base_url: str) -> int:
    messages: list[Message] = [UserMessage(content="What is the tallest llama breed?")]
    async with VLLMServer(base_url) as llm:
        reply = await ask(llm, messages)
        messages.append(reply)
        for call in reply.tool_calls:
            print(f"tool call: {call.tool_name}({call.arguments})")
            result = '{"results": ["Classic llamas stand 1.7-1.8 m tall at the head."]}'
            messages.append(
                ToolMessage(call_id=call.call_id, tool_name=call.tool_name, content=result)
            )
        if reply.tool_calls:
            final = await ask(llm, messages)
            print(f"answer: {final.content}")
    return 0


if __name__ == "__main__":
    with ExitStack() as stack:
        url = os.environ.get("VLLM_BASE_URL")
        if not url:
            print(
                "VLLM_BASE_URL not set: using the scripted loopback vLLM server.", file=sys.stderr
            )
            url = stack.enter_context(VLLMTestServer(SCRIPT, models=[MODEL])).base_url
        sys.exit(asyncio.run(main(url)))
