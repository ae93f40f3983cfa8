"""Brave Search and Wolfram|Alpha as built-in tools in full agent turns.

The model is the scripted vLLM server on loopback (raw Llama 3.1 output, ``<|python_tag|>``
calls included); the Brave and Wolfram APIs are a fake HTTP server on loopback answering in
their real reply shapes. Everything between them is the production path.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from agent_helpers import LLAMA31, agent_on, prompts, step_types
from fake_apis import XML, Canned, FakeAPI, fixture

from agentic.agent import Agent, AgentConfig, PersistenceConfig, ToolExecutionStep, Turn
from agentic.config import Settings
from agentic.errors import ConfigError
from agentic.inference.vllm_server import VLLMServer
from agentic.testing import VLLMTestServer
from agentic.tools import ToolErrorKind, ToolResponse
from agentic.tools.brave import BraveSearch
from agentic.tools.wolfram import WolframAlpha

IPYTHON = "<|start_header_id|>ipython<|end_header_id|>\n\n"
HEADER = "Environment: ipython\nTools: brave_search, wolfram_alpha\n"
BRAVE = "/res/v1/web/search"
WOLFRAM = "/v2/query"


@pytest.fixture
def apis() -> Iterator[FakeAPI]:
    with FakeAPI() as api:
        api.route(BRAVE, Canned(body=fixture("brave_sample.json")))
        api.route(WOLFRAM, Canned(body=fixture("wolfram_sample.xml"), content_type=XML))
        yield api


@pytest.fixture
async def web_tools(apis: FakeAPI) -> AsyncIterator[list[BraveSearch | WolframAlpha]]:
    brave = BraveSearch("brave-key", base_url=apis.url("/res/v1"))
    wolfram = WolframAlpha("wolfram-id", base_url=apis.url(WOLFRAM))
    yield [brave, wolfram]
    await brave.aclose()  # tools we construct are ours to close
    await wolfram.aclose()


def call(tool: str, query: str) -> str:
    return f'<|python_tag|>{tool}.call(query="{query}")<|eom_id|>'


def tool_response(turn: Turn) -> ToolResponse:
    assert step_types(turn) == ["inference", "tool_execution", "inference"]
    step = turn.steps[1]
    assert isinstance(step, ToolExecutionStep)
    (response,) = step.tool_responses
    return response


async def run_turn(
    server: VLLMTestServer, home: Path, tools: list[BraveSearch | WolframAlpha], question: str
) -> Turn:
    async with agent_on(server, home, tools=tools) as agent:
        session = await agent.create_session()
        return await session.run(question)


async def test_a_search_turn_feeds_the_cleaned_results_to_the_model(
    apis: FakeAPI, web_tools: list[BraveSearch | WolframAlpha], tmp_path: Path
) -> None:
    script = [
        call("brave_search", "how do sourdough starters work"),
        "Wild yeast and bacteria ferment the flour.<|eot_id|>",
    ]
    with VLLMTestServer(script, models=[LLAMA31]) as server:
        turn = await run_turn(server, tmp_path, web_tools, "How do sourdough starters work?")
    assert turn.output_text == "Wild yeast and bacteria ferment the flour."
    response = tool_response(turn)
    assert response.tool_name == "brave_search"
    assert response.error is None
    assert isinstance(response.content, str)
    results = json.loads(response.content)
    assert results["query"] == "how do sourdough starters work"
    assert results["results"][0]["title"] == "Sourdough Starter Basics: Yeast, Bacteria and Time"
    assert {r["type"] for r in results["results"]} == {
        "web",
        "faq",
        "news",
        "discussion",
        "video",
        "infobox",
    }
    (request,) = apis.requests
    assert request.param("q") == "how do sourdough starters work"
    assert request.headers["x-subscription-token"] == "brave-key"
    first, second = prompts(server)
    assert HEADER in first
    assert second.startswith(first)
    assert f"{IPYTHON}{response.content}<|eot_id|>" in second


async def test_a_wolfram_turn_shows_the_model_every_solution(
    web_tools: list[BraveSearch | WolframAlpha], tmp_path: Path
) -> None:
    script = [
        call("wolfram_alpha", "solve x^2 - 5x + 6 = 0"),
        "The solutions are x = 2 and x = 3.<|eot_id|>",
    ]
    with VLLMTestServer(script, models=[LLAMA31]) as server:
        turn = await run_turn(server, tmp_path, web_tools, "Solve x^2 - 5x + 6 = 0")
    response = tool_response(turn)
    assert response.error is None
    assert isinstance(response.content, str)
    pods = json.loads(response.content)["queryresult"]["pods"]
    assert pods[-1]["subpods"] == [
        {"title": "", "plaintext": "x = 2"},
        {"title": "", "plaintext": "x = 3"},
    ]
    first, second = prompts(server)
    assert HEADER in first
    assert f"{IPYTHON}{response.content}<|eot_id|>" in second
    assert turn.output_text == "The solutions are x = 2 and x = 3."


async def test_a_failing_search_reaches_the_model_and_the_turn_completes(
    apis: FakeAPI, web_tools: list[BraveSearch | WolframAlpha], tmp_path: Path
) -> None:
    apis.route(BRAVE, Canned(500, "<html><body>Internal Server Error</body></html>", "text/html"))
    script = [
        call("brave_search", "sourdough"),
        "I could not search the web right now.<|eot_id|>",
    ]
    with VLLMTestServer(script, models=[LLAMA31]) as server:
        turn = await run_turn(server, tmp_path, web_tools, "Search sourdough")
    response = tool_response(turn)
    assert response.error is ToolErrorKind.exception
    assert response.content == (
        "Tool 'brave_search' failed: SearchError: search failed: Brave Search is unavailable "
        "(HTTP 500: Internal Server Error)"
    )
    assert f"{IPYTHON}{response.content}<|eot_id|>" in prompts(server)[-1]
    assert turn.output_text == "I could not search the web right now."


async def test_builtin_names_build_the_tools_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BRAVE_SEARCH_API_KEY", "env-brave")
    monkeypatch.setenv("WOLFRAM_ALPHA_APP_ID", "env-wolfram")
    with VLLMTestServer(["Hello!<|eot_id|>"], models=[LLAMA31]) as server:
        async with agent_on(server, tmp_path, tools=["brave_search", "wolfram_alpha"]) as agent:
            brave, wolfram = agent.core.owned_tools
            assert isinstance(brave, BraveSearch)
            assert isinstance(wolfram, WolframAlpha)
            turn = await (await agent.create_session()).run("Hi")
    assert turn.output_text == "Hello!"
    assert HEADER in prompts(server)[0]


@pytest.mark.parametrize(
    ("name", "env_var"),
    [("brave_search", "BRAVE_SEARCH_API_KEY"), ("wolfram_alpha", "WOLFRAM_ALPHA_APP_ID")],
)
async def test_a_missing_key_fails_when_the_agent_is_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, env_var: str
) -> None:
    monkeypatch.delenv(env_var, raising=False)
    config = AgentConfig(
        model=LLAMA31, tools=[name], persistence=PersistenceConfig(backend="memory")
    )
    async with VLLMServer("http://127.0.0.1:9/v1", max_retries=0) as backend:  # never contacted
        with pytest.raises(ConfigError, match=f"set the {env_var} environment variable"):
            Agent(config, backend=backend, settings=Settings(home=tmp_path))
