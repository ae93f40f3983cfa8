"""@tool: schema from the signature and docstring, validation, context injection, built-ins."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from agentic.errors import ConfigError, ToolArgumentsError
from agentic.tools import FunctionTool, Tool, ToolContext, tool
from agentic.types import ToolCall, ToolDefinition


@dataclass
class Deps:
    greeting: str


class Point(BaseModel):
    x: int
    y: int


class Opaque:
    """A type pydantic cannot describe."""


def ctx_for(tool_name: str, /, deps: Any = None, **arguments: Any) -> ToolContext[Any]:
    call = ToolCall(tool_name=tool_name, arguments=arguments)
    return ToolContext(deps=deps, session_id="s1", turn_id="t1", call=call)


@tool
def get_weather(city: str, unit: Literal["c", "f"] = "c", days: int = 1) -> str:
    """Get the weather forecast.

    Args:
        city: The city name.
        unit: Temperature unit.
        days: How many days ahead.
    """
    return f"{city}:{unit}:{days}"


def test_schema_comes_from_the_docstring_and_hints() -> None:
    d = get_weather.definition
    assert d.name == "get_weather"
    assert d.description == "Get the weather forecast."
    assert d.parameters["required"] == ["city"]
    props = d.parameters["properties"]
    assert props["city"] == {"type": "string", "description": "The city name."}
    assert props["unit"]["enum"] == ["c", "f"]
    assert props["days"] == {"type": "integer", "default": 1, "description": "How many days ahead."}
    assert [p.name for p in d.params()] == ["city", "unit", "days"]
    assert not d.is_builtin


def test_options_override_name_description_and_limits() -> None:
    @tool(name="weather", description="Forecasts.", timeout=5, max_output_chars=100)
    async def fn(city: str) -> str:
        """Ignored summary."""
        return city

    assert isinstance(fn, FunctionTool)
    assert isinstance(fn, Tool)
    assert fn.definition.name == "weather"
    assert fn.definition.description == "Forecasts."
    assert (fn.timeout, fn.max_output_chars) == (5, 100)
    assert repr(fn) == "FunctionTool('weather')"


async def test_the_tool_stays_callable_like_the_function() -> None:
    assert get_weather("Paris", days=2) == "Paris:c:2"
    assert get_weather.__name__ == "get_weather"
    assert "forecast" in (get_weather.__doc__ or "")

    @tool
    async def double(x: int) -> int:
        return 2 * x

    assert await double(4) == 8


async def test_arguments_are_validated_and_coerced() -> None:
    @tool
    async def move(p: Point, steps: int) -> str:
        return f"{type(p).__name__}({p.x},{p.y})x{steps}"

    out = await move.call({"p": {"x": "1", "y": 2}, "steps": "3"}, ctx_for("move"))
    assert out == "Point(1,2)x3"


async def test_invalid_arguments_name_each_field() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        await get_weather.call({"unit": "k", "days": "many"}, ctx_for("get_weather"))
    err = info.value
    assert err.tool_name == "get_weather"
    assert "city: Field required" in err.details
    assert "unit: Input should be 'c' or 'f' (got 'k')" in err.details
    assert "days: Input should be a valid integer" in err.details
    assert "(got 'many')" in err.details
    assert "https://" not in err.details  # no pydantic doc links for the model to read


async def test_unexpected_arguments_are_reported_with_the_valid_ones() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        await get_weather.call({"city": "Rome", "units": "f"}, ctx_for("get_weather"))
    assert info.value.details == "units: unexpected argument (valid arguments: city, unit, days)"

    with pytest.raises(ToolArgumentsError) as info:
        await get_weather.call({"town": "Rome"}, ctx_for("get_weather"))
    assert "town: unexpected argument" in info.value.details
    assert "city: Field required" in info.value.details


async def test_long_bad_inputs_are_shortened_in_the_message() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        await get_weather.call({"city": "x", "days": "y" * 500}, ctx_for("get_weather"))
    assert "(got 'yyyy" in info.value.details
    assert len(info.value.details) < 200


async def test_context_is_injected_and_not_in_the_schema() -> None:
    seen: list[ToolContext[Any]] = []

    @tool
    async def greet(ctx: ToolContext[Deps], name: str) -> str:
        seen.append(ctx)
        return f"{ctx.deps.greeting}, {name}"

    @tool
    def bare(name: str, context: ToolContext) -> str:  # type: ignore[type-arg]
        return f"{context.session_id}/{context.turn_id}/{name}"

    assert list(greet.definition.parameters["properties"]) == ["name"]
    assert list(bare.definition.parameters["properties"]) == ["name"]
    ctx = ctx_for("greet", Deps("Hello"), name="Ada")
    assert await greet.call({"name": "Ada"}, ctx) == "Hello, Ada"
    assert seen == [ctx]
    assert await bare.call({"name": "Ada"}, ctx) == "s1/t1/Ada"


async def test_positional_only_parameters_are_passed_by_position() -> None:
    @tool
    def power(base: int, ctx: ToolContext[None], /, exp: int = 2) -> int:
        return int(base**exp)

    assert list(power.definition.parameters["properties"]) == ["base", "exp"]
    assert await power.call({"base": "3"}, ctx_for("power")) == 9


async def test_a_sync_tool_does_not_block_the_event_loop() -> None:
    @tool
    def slow(seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        assert await slow.call({"seconds": 0.2}, ctx_for("slow")) == "done"
    finally:
        task.cancel()
    assert ticks >= 5  # the loop kept running while the function slept in its thread


async def test_callables_and_lambdas_with_a_name() -> None:
    class Counter:
        async def __call__(self, step: int = 1) -> int:
            return step + 1

    counter = tool(name="count")(Counter())
    assert counter.definition.name == "count"
    assert await counter.call({"step": 2}, ctx_for("count")) == 3

    square = tool(name="square")(lambda x: x * x)
    assert await square.call({"x": 5}, ctx_for("square")) == 25


def test_a_parameter_named_like_a_model_attribute_works() -> None:
    @tool
    def dump(json: str, copy: int = 1) -> str:
        return json * copy

    assert dump.validate({"json": "ab", "copy": "2"}) == {"json": "ab", "copy": 2}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "get weather"}, "not usable in a tool call"),
        ({"name": "1st"}, "not usable in a tool call"),
        ({"timeout": 0}, "timeout must be a positive"),
        ({"max_output_chars": 0}, "max_output_chars must be at least 1"),
    ],
)
def test_bad_options_fail_at_decoration(kwargs: dict[str, Any], message: str) -> None:
    def fn(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match=message):
        tool(**kwargs)(fn)


def test_unusable_functions_fail_at_decoration() -> None:
    def gen(x: int) -> Any:
        yield x

    async def agen(x: int) -> Any:
        yield x

    def takes_opaque(thing: Opaque) -> None:
        pass

    with pytest.raises(ConfigError, match="is a generator"):
        tool(gen)
    with pytest.raises(ConfigError, match="is a generator"):
        tool(agen)
    with pytest.raises(ConfigError, match="needs a function"):
        FunctionTool(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a name"):
        tool(lambda x: x)
    with pytest.raises(ConfigError, match="'takes_opaque': a parameter type has no JSON schema"):
        tool(takes_opaque)


async def test_builtin_names_get_the_builtin_definition() -> None:
    @tool
    async def brave_search(query: str) -> str:
        """Search the web (the model knows this tool; the docstring is not shown)."""
        return f"results for {query}"

    @tool(name="code_interpreter", timeout=10)
    def run_code(code: str, ctx: ToolContext[None], language: str = "python") -> str:
        return f"{language}: {code}"

    assert brave_search.definition == ToolDefinition.builtin("brave_search")
    assert brave_search.definition.is_builtin
    assert run_code.definition == ToolDefinition.builtin("code_interpreter")
    assert await brave_search.call({"query": "llamas"}, ctx_for("brave_search")) == (
        "results for llamas"
    )
    assert await run_code.call({"code": "1+1"}, ctx_for("code_interpreter")) == "python: 1+1"


def test_builtin_tools_must_take_their_one_string_argument() -> None:
    def wrong_name(q: str) -> str:
        return q

    def wrong_type(query: int) -> str:
        return ""

    def extra_required(query: str, limit: int) -> str:
        return ""

    def draw(query: str) -> str:
        return query

    with pytest.raises(ConfigError, match=r"must accept `query: str`"):
        tool(name="brave_search")(wrong_name)
    with pytest.raises(ConfigError, match=r"must accept `query: str`"):
        tool(name="wolfram_alpha")(wrong_type)
    with pytest.raises(ConfigError, match=r"must accept `code: str`"):
        tool(name="code_interpreter")(wrong_name)
    with pytest.raises(ConfigError, match="give the other parameters defaults: limit"):
        tool(name="brave_search")(extra_required)
    with pytest.raises(ConfigError, match="drop description="):
        tool(name="photogen", description="Draws.")(draw)


def test_unresolvable_hint_is_a_config_error() -> None:
    def broken(x: Undefined) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(ConfigError, match="cannot resolve a type hint"):
        tool(broken)
