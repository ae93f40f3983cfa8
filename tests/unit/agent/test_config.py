"""AgentConfig and building an Agent: every mistake is a clear error before the first turn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agentic.agent import Agent, AgentConfig, PersistenceConfig
from agentic.config import Settings
from agentic.errors import ConfigError, UnknownModelError, UnsupportedFeatureError
from agentic.inference.vllm_server import VLLMServer
from agentic.tools import tool
from agentic.types import SamplingParams, ToolDefinition

LLAMA31 = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA32 = "meta-llama/Llama-3.2-3B-Instruct"


@tool
def get_weather(city: str) -> str:
    """Weather in a city."""
    return city


@tool(name="brave_search")
def search(query: str) -> str:
    return query


def build(tmp_path: Path, **config: object) -> Agent:
    config.setdefault("model", LLAMA31)
    tools = config.pop("agent_tools", ())
    cfg = AgentConfig(persistence=PersistenceConfig(backend="memory"), **config)
    backend = VLLMServer("http://127.0.0.1:9/v1")  # never contacted: building is offline
    return Agent(cfg, backend=backend, tools=tools, settings=Settings(home=tmp_path))  # type: ignore[arg-type]  # the test passes tools through **config


def test_a_valid_agent_builds(tmp_path: Path) -> None:
    agent = build(tmp_path, tools=["get_weather"], agent_tools=[get_weather])
    assert agent.core.tool_names == ["get_weather"]
    assert repr(agent) == f"Agent('agent', model='{LLAMA31}')"


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        ({"tools": ["nope"]}, ConfigError, "unknown tool 'nope'"),
        (
            {"tools": ["brave_serch"]},
            ConfigError,
            "did you mean 'brave_search'.*built in: brave_search, code_interpreter",
        ),
        ({"tools": [get_weather, get_weather]}, ConfigError, "duplicate tool names.*get_weather"),
        (
            {
                "tools": [get_weather],
                "client_tools": [ToolDefinition(name="get_weather")],
            },
            ConfigError,
            "duplicate tool names",
        ),
        ({"model": "gpt-4"}, UnknownModelError, "gpt-4"),
        ({"model": LLAMA32, "tools": [search]}, UnsupportedFeatureError, "built-in tools"),
        (
            {"model": LLAMA32, "tools": [get_weather], "tool_prompt_format": "json"},
            UnsupportedFeatureError,
            "json",
        ),
        ({"tools": [get_weather], "tool_choice": "other"}, ConfigError, "tool_choice 'other'"),
        ({"tool_choice": "required"}, ConfigError, "needs at least one tool"),
        ({"model": "meta-llama/Llama-Guard-3-8B"}, UnsupportedFeatureError, "not a chat model"),
        ({"input_shields": ["guard"]}, ConfigError, "unknown shield 'guard'"),
        ({"memory_banks": ["kb"]}, ConfigError, "unknown memory_bank 'kb'"),
        (
            {"sampling": {"max_tokens": 1_000_000}},
            ConfigError,
            r"max_tokens \(1000000\) leaves no room for the prompt.*131072",
        ),
        (
            {"sampling": {"max_tokens": 4096}, "context_length": 4096},
            ConfigError,
            "context of 4096 tokens",
        ),
        ({"response_format": {"type": "objekt"}}, ConfigError, "no valid JSON schema"),
        (
            {"model": LLAMA32, "client_tools": [ToolDefinition(name="get-weather")]},
            ConfigError,
            "pythonic format.*'get-weather'",
        ),
        (
            {"response_format": {"type": "object", "properties": {"x": {"type": 3}}}},
            ConfigError,
            "at properties/x/type",
        ),
    ],
)
def test_mistakes_fail_when_the_agent_is_built(
    tmp_path: Path, config: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build(tmp_path, **config)


def test_config_from_yaml_resolves_tool_names(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "name: weather\n"
        f"model: {LLAMA31}\n"
        "instructions: Answer briefly.\n"
        "tools: [get_weather]\n"
        "max_infer_iters: 4\n"
        "sampling: {temperature: 0.2}\n"
        "persistence: {backend: memory}\n"
    )
    cfg = AgentConfig.from_yaml(path)
    assert (cfg.name, cfg.max_infer_iters, cfg.sampling.temperature) == ("weather", 4, 0.2)
    backend = VLLMServer("http://127.0.0.1:9/v1")
    agent = Agent(path, backend=backend, tools=[get_weather], settings=Settings(home=tmp_path))
    assert agent.core.tool_names == ["get_weather"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        (f"model: {LLAMA31}\nmax_infer_iters: 0\n", "max_infer_iters"),
        (f"model: {LLAMA31}\ncolour: blue\n", "colour: unknown setting$"),
        (f"model: {LLAMA31}\ninstruction: Be brief.\n", "did you mean 'instructions'"),
        (f"model: {LLAMA31}\nsampling: {{temprature: 0}}\n", "did you mean 'temperature'"),
        (
            f"model: {LLAMA31}\nclient_tools: [{{name: ask, descripton: Ask}}]\n",
            "client_tools.0.descripton: unknown setting, did you mean 'description'",
        ),
        (
            f"model: {LLAMA31}\nclient_tools: [{{name: ask, parameters: {{q: {{type: str}}}}}}]\n",
            "client_tools.0.parameters: parameters must be a JSON schema .*names \\(q\\)",
        ),
    ],
)
def test_bad_yaml_is_a_config_error(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        AgentConfig.from_yaml(path)


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read agent config"):
        AgentConfig.from_yaml(tmp_path / "absent.yaml")


def test_postgres_needs_a_url() -> None:
    with pytest.raises(ConfigError, match="needs url"):
        PersistenceConfig(backend="postgres")


def test_durability_defaults_to_per_step_for_databases_and_exit_for_memory() -> None:
    assert PersistenceConfig().step_durability == "sync"
    assert PersistenceConfig(backend="postgres", url="postgresql://h/db").step_durability == "sync"
    assert PersistenceConfig(backend="memory").step_durability == "exit"
    assert PersistenceConfig(backend="memory", durability="sync").step_durability == "sync"
    assert PersistenceConfig(durability="async").step_durability == "async"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: AgentConfig(model=LLAMA31, instruction="Be brief."),  # type: ignore[call-arg]
            "invalid agent config: instruction: unknown setting, did you mean 'instructions'",
        ),
        (
            lambda: AgentConfig(model=LLAMA31, sampling={"temprature": 0.2}),
            "invalid agent config: sampling.temprature: unknown setting, did you mean 'temp",
        ),
        (lambda: AgentConfig(model=LLAMA31, max_infer_iters=0), "max_infer_iters: .* 1"),
        (lambda: SamplingParams(top_p=0), "invalid sampling params: top_p: .* 0"),
        (lambda: PersistenceConfig(backend="pg"), "invalid persistence config: backend"),
    ],
)
def test_settings_built_in_code_fail_with_a_config_error(
    make: Callable[[], object], match: str
) -> None:
    """``except AgenticError`` catches a mistake in settings written in Python too, and the
    message is the one a YAML config gets (not pydantic's ValidationError)."""
    with pytest.raises(ConfigError, match=match):
        make()


def test_from_dict_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="response_format"):
        AgentConfig.from_dict({"model": LLAMA31, "response_format": 3})


@pytest.mark.parametrize(
    "sampling",
    [
        {"top_k": -5},
        {"presence_penalty": 5},
        {"frequency_penalty": -3},
        {"repetition_penalty": 0},
        {"repetition_penalty": float("inf")},
    ],
)
def test_sampling_outside_vllms_ranges_fails_in_the_config(sampling: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="sampling"):
        AgentConfig.from_dict({"model": LLAMA31, "sampling": sampling})


@pytest.mark.parametrize("top_k", [-1, 0, 1, 50])
def test_top_k_takes_vllms_values(top_k: int) -> None:
    config = AgentConfig.from_dict({"model": LLAMA31, "sampling": {"top_k": top_k}})
    assert config.sampling.top_k == top_k


def test_a_mistake_found_when_an_agent_is_built_from_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(f"model: {LLAMA31}\ntools: [brave_serch]\n")
    with pytest.raises(ConfigError, match=r"unknown tool 'brave_serch'.*\(in '.*agent\.yaml'\)"):
        Agent(path, backend=VLLMServer("http://127.0.0.1:9/v1"), settings=Settings(home=tmp_path))
