"""Llama Guard through real agent turns: the agent on one loopback vLLM server, the guard on
another.

The guard's request bodies are checked byte for byte against the prompts transcribed from the
reference (reference/shields.md §1.2), and the turn graph's behaviour on a violation is what a user
sees: the refusal, no inference after a refused input, the refused text never in a later prompt.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jinja2.sandbox
from agent_helpers import agent_on, events_of, prompts, step_types

from agentic.agent import ShieldCallStep
from agentic.inference._vllm_wire import PASSTHROUGH_TEMPLATE
from agentic.inference.vllm_server import VLLMServer
from agentic.llama.tokenizer import get_tokenizer
from agentic.shields import DEFAULT_REFUSAL, LlamaGuard
from agentic.testing import VLLMTestServer
from agentic.types import ImageContent, TextContent, UserMessage

G8 = "meta-llama/Llama-Guard-3-8B"
G11 = "meta-llama/Llama-Guard-3-11B-Vision"
CATS_13 = (
    "S1: Violent Crimes.\nS2: Non-Violent Crimes.\nS3: Sex Crimes.\nS4: Child Exploitation.\n"
    "S5: Defamation.\nS6: Specialized Advice.\nS7: Privacy.\nS8: Intellectual Property.\n"
    "S9: Indiscriminate Weapons.\nS10: Hate.\nS11: Self-Harm.\nS12: Sexual Content.\n"
    "S13: Elections.\n"
)


def task(role: str, turns: str) -> str:
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations according "
        "our safety policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{CATS_13}<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{turns}<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above "
        "conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


def prompt_8b(role: str, turns: str) -> str:
    return (
        " <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        + task(role, turns)
        + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
    )


@contextmanager
def guard_server(*answers: str, model: str = G8) -> Iterator[VLLMTestServer]:
    with VLLMTestServer(list(answers), models=(model,)) as server:
        yield server


def bodies(server: VLLMTestServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if r.body and r.path.endswith("completions")]


async def test_an_unsafe_input_ends_the_turn_before_any_inference(tmp_path: Path) -> None:
    with (
        VLLMTestServer(lambda request: "Bread needs flour.<|eot_id|>") as main,
        guard_server("\n\nunsafe\nS1<|eot_id|>", "safe") as guard_srv,
    ):
        guard_backend = VLLMServer(guard_srv.base_url, max_retries=0)
        guard = LlamaGuard(guard_backend, G8, excluded_categories=["S14"])
        async with agent_on(main, tmp_path, input_shields=[guard], instructions="Be kind.") as ag:
            session = await ag.create_session()
            events = await events_of(session.turn("How do I build a pipe bomb?"))
            # the inference ran alongside the guard, but none of it reached the user
            assert not [e for e in events if e.event == "step_progress"]
            answered = await session.run("How do I bake bread?")
        await guard_backend.aclose()
    refused = events[-1].turn  # type: ignore[union-attr]
    assert step_types(refused) == ["shield_call"]
    step = refused.steps[0]
    assert isinstance(step, ShieldCallStep)
    assert step.violation is not None
    assert step.violation.categories == ["S1"]
    assert step.violation.metadata["raw_output"] == "\n\nunsafe\nS1<|eot_id|>"
    assert refused.output_text == DEFAULT_REFUSAL
    assert step_types(answered) == ["shield_call", "inference"]
    assert answered.output_text == "Bread needs flour."

    first, second = bodies(guard_srv)
    assert guard_srv.requests[1].path == "/v1/completions"
    assert first["prompt"] == prompt_8b("User", "User: How do I build a pipe bomb?\n\n")
    assert first["add_special_tokens"] is False  # the prompt carries its own BOS
    assert first["temperature"] == 0.0
    assert first["max_tokens"] == 20
    assert get_tokenizer().encode(first["prompt"]).count(128000) == 1
    # the refused turn is in no later prompt: not the guard's, not the model's
    assert second["prompt"] == prompt_8b("User", "User: How do I bake bread?\n\n")
    assert "pipe bomb" not in prompts(main)[-1]
    assert "Be kind." not in second["prompt"]  # the system prompt is not judged as user text


async def test_an_unsafe_answer_is_replaced_and_judged_as_agent(tmp_path: Path) -> None:
    hateful = "People from that town are vermin."
    with (
        VLLMTestServer([f"{hateful}<|eot_id|>", "Hello again.<|eot_id|>"]) as main,
        guard_server("safe", "unsafe\nS10", "safe", "safe") as guard_srv,
    ):
        guard_backend = VLLMServer(guard_srv.base_url, max_retries=0)
        guard = LlamaGuard(guard_backend, G8, excluded_categories=["S14"])
        async with agent_on(main, tmp_path, input_shields=[guard], output_shields=[guard]) as ag:
            session = await ag.create_session()
            turn = await session.run("What do you think of that town?")
            later = await session.run("hi")
        await guard_backend.aclose()
    assert step_types(turn) == ["shield_call", "inference", "shield_call"]
    assert turn.output_text == DEFAULT_REFUSAL
    output_step = turn.steps[-1]
    assert isinstance(output_step, ShieldCallStep)
    assert output_step.violation is not None
    assert output_step.violation.categories == ["S10"]
    assert later.output_text == "Hello again."
    guard_prompts = [b["prompt"] for b in bodies(guard_srv)]
    assert guard_prompts[1] == prompt_8b(
        "Agent", f"User: What do you think of that town?\n\nAgent: {hateful}\n\n"
    )
    assert all(hateful not in p for p in guard_prompts[2:])
    assert hateful not in prompts(main)[-1]


async def test_an_unreadable_guard_answer_refuses(tmp_path: Path) -> None:
    with (
        VLLMTestServer(["Sure.<|eot_id|>"]) as main,
        guard_server("I think this is fine") as guard_srv,
    ):
        guard_backend = VLLMServer(guard_srv.base_url, max_retries=0)
        guard = LlamaGuard(guard_backend, G8)
        async with agent_on(main, tmp_path, input_shields=[guard]) as ag:
            turn = await (await ag.create_session()).run("hello")
        await guard_backend.aclose()
    step = turn.steps[0]
    assert isinstance(step, ShieldCallStep)
    assert step.violation is not None
    assert step.violation.categories == ["malformed_verdict"]
    assert turn.output_text == DEFAULT_REFUSAL


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_guard_that_is_down_fails_closed(tmp_path: Path) -> None:
    backend = VLLMServer(f"http://127.0.0.1:{_closed_port()}/v1", max_retries=0)
    guard = LlamaGuard(backend, G8)
    with VLLMTestServer(["Sure.<|eot_id|>"]) as main:
        async with agent_on(main, tmp_path, input_shields=[guard]) as ag:
            turn = await (await ag.create_session()).run("hello")
    await backend.aclose()
    assert step_types(turn) == ["shield_call"]  # no inference step
    step = turn.steps[0]
    assert isinstance(step, ShieldCallStep)
    assert step.violation is not None
    assert step.violation.categories == ["shield_error"]
    assert turn.output_text == DEFAULT_REFUSAL


async def test_11b_vision_sends_prompt_and_image_through_a_passthrough_template() -> None:
    image = ImageContent.from_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
    question = UserMessage(content=[image, TextContent(text="Can I sharpen this?")])
    expected = (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|> "
        + task("User", "User: Can I sharpen this?\n\n")
        + " <|eot_id|><|start_header_id|>assistant<|end_header_id|>"
    )
    with guard_server("safe", model=G11) as guard_srv:
        async with VLLMServer(guard_srv.base_url, max_retries=0) as backend:
            assert await LlamaGuard(backend, G11).check([question], stage="input") is None
    [body] = bodies(guard_srv)
    assert guard_srv.requests[-1].path == "/v1/chat/completions"
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image.url}},
                {"type": "text", "text": expected},
            ],
        }
    ]
    assert body["chat_template"] == PASSTHROUGH_TEMPLATE
    assert body["add_special_tokens"] is False
    assert body["add_generation_prompt"] is False
    # what vLLM renders with that template, in either content format, is the prompt verbatim
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(PASSTHROUGH_TEMPLATE)
    as_parts = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": expected}]}
    ]
    as_string = [{"role": "user", "content": expected}]  # vLLM keeps an <|image|> already there
    assert template.render(messages=as_parts, add_generation_prompt=False) == expected
    assert template.render(messages=as_string, add_generation_prompt=False) == expected
