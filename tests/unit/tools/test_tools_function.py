"""@tool: schema from the signature and docstring, validation, context injection, built-ins."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any, Literal, Optional

import pytest
from pydantic import BaseModel

from agentic._functions import pythonic_name_problems
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


# --- methods -----------------------------------------------------------------------------------


class WeatherService:
    def __init__(self, unit: str) -> None:
        self.unit = unit

    @tool
    async def forecast(self, city: str, ctx: ToolContext[Deps]) -> str:
        """Forecast for a city.

        Args:
            city: The city.
        """
        return f"{ctx.deps.greeting}: 25 {self.unit} in {city}"

    @tool
    def scale(this, value: int, /) -> str:
        return f"{value} {this.unit}"

    def plain(self, city: str) -> str:
        return f"{city} in {self.unit}"


async def test_a_method_tool_binds_to_its_instance() -> None:
    celsius, fahrenheit = WeatherService("C"), WeatherService("F")
    ctx = ctx_for("forecast", Deps("Hi"))

    assert celsius.forecast.definition.parameters == {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city."}},
        "required": ["city"],
    }
    assert await celsius.forecast.call({"city": "Paris"}, ctx) == "Hi: 25 C in Paris"
    assert await fahrenheit.forecast.call({"city": "Paris"}, ctx) == "Hi: 25 F in Paris"
    assert await celsius.forecast("Rome", ctx) == "Hi: 25 C in Rome"
    assert await WeatherService.forecast(fahrenheit, "Rome", ctx) == "Hi: 25 F in Rome"
    assert list(celsius.scale.definition.parameters["properties"]) == ["value"]
    assert await celsius.scale.call({"value": "3"}, ctx_for("scale")) == "3 C"
    renamed = tool(name="forecast_here")(celsius.forecast)  # a tool of the bound tool
    assert renamed.definition.parameters == celsius.forecast.definition.parameters
    assert await renamed.call({"city": "Oslo"}, ctx) == "Hi: 25 C in Oslo"
    bound_method = tool(fahrenheit.plain)
    assert list(bound_method.definition.parameters["properties"]) == ["city"]
    assert await bound_method.call({"city": "Oslo"}, ctx_for("plain")) == "Oslo in F"


async def test_class_and_static_method_tools() -> None:
    class Units:
        @tool
        @classmethod
        def units(cls, system: str = "metric") -> str:
            return f"{cls.__name__}: {system}"

        @tool
        @staticmethod
        def convert(celsius: float) -> float:
            return celsius * 9 / 5 + 32

    for units in (Units.units, Units().units):
        assert list(units.definition.parameters["properties"]) == ["system"]
        assert await units.call({}, ctx_for("units")) == "Units: metric"
    for convert in (Units.convert, Units().convert):
        assert list(convert.definition.parameters["properties"]) == ["celsius"]
        assert await convert.call({"celsius": 100}, ctx_for("convert")) == 212


def test_an_unbound_method_tool_fails_when_given_to_an_agent() -> None:
    from agentic.agent import AgentConfig, PersistenceConfig
    from agentic.agent.core import build_core
    from agentic.inference.vllm_server import VLLMServer
    from agentic.tools import ToolExecutor

    hint = r"give the agent `instance.forecast`.* not `WeatherService.forecast`"
    with pytest.raises(ConfigError, match=hint):
        ToolExecutor([WeatherService.forecast])
    config = AgentConfig(
        model="meta-llama/Llama-3.1-8B-Instruct",
        persistence=PersistenceConfig(backend="memory"),
        tools=["forecast"],
    )
    offline = VLLMServer("http://127.0.0.1:9/v1")  # never contacted
    with pytest.raises(ConfigError, match=hint):
        build_core(config, offline, tools=[WeatherService.forecast])


def test_tool_below_staticmethod_fails_clearly() -> None:
    class Misordered:
        @staticmethod
        @tool
        def convert(celsius: float) -> float:
            return celsius

    with pytest.raises(ConfigError, match="put @tool above @staticmethod"):
        _ = Misordered.convert.definition


# --- docstrings --------------------------------------------------------------------------------


def test_numpy_docstrings_describe_the_parameters() -> None:
    @tool
    def numpy_style(city: str, days: int = 1, hours: int = 0) -> str:
        """Get the forecast.

        Parameters
        ----------
        city : str
            The city name,
            with its country.
        days, hours : int, optional
            How far ahead.

        Returns
        -------
        str
            The forecast.
        """
        return city

    props = numpy_style.definition.parameters["properties"]
    assert numpy_style.definition.description == "Get the forecast."
    assert props["city"]["description"] == "The city name, with its country."
    assert props["days"]["description"] == props["hours"]["description"] == "How far ahead."


def test_google_keyword_args_and_other_sections() -> None:
    @tool
    def search(query: str, when: str, *, limit: int = 5) -> str:
        """Search things.

        Example:
            >>> search("llamas", "today")

        Args:
            query: The query.
            when: ISO date.
                Note: in UTC.

        Keyword Args:
            limit: Max results.

        Raises:
            ValueError: never.
        """
        return query

    @tool
    def no_args(x: int) -> int:
        """Double a number.

        Returns:
            The double.

        Note:
            Cheap.
        """
        return 2 * x

    props = search.definition.parameters["properties"]
    assert search.definition.description == "Search things."
    assert props["query"]["description"] == "The query."
    assert props["when"]["description"] == "ISO date. Note: in UTC."
    assert props["limit"]["description"] == "Max results."
    assert no_args.definition.description == "Double a number."


def test_partials_and_wrappers_show_the_wrapped_docstring() -> None:
    def search(index: str, query: str, limit: int = 5) -> str:
        """Search the product catalogue.

        Args:
            index: Which index.
            query: What to look for.
        """
        return f"{index}:{query}"

    def wrapper(query: str, limit: int = 5) -> str:
        return search("products", query, limit)

    wrapper.__wrapped__ = search  # type: ignore[attr-defined]  # wraps-style, without the doc
    for fn in (functools.partial(search, "products"), wrapper):
        t = tool(name="search_products")(fn)
        assert t.definition.description == "Search the product catalogue."
        assert t.definition.parameters["properties"]["query"]["description"] == (
            "What to look for."
        )


# --- parameters --------------------------------------------------------------------------------


async def test_parameters_named_like_pydantic_internals() -> None:
    @tool
    def configure(model_config: str, model_dump: bool = False, _private: int = 0) -> str:
        """Configure.

        Args:
            model_config: Which config.
        """
        return f"{model_config}/{model_dump}/{_private}"

    props = configure.definition.parameters["properties"]
    assert list(props) == ["model_config", "model_dump", "_private"]
    assert props["model_config"]["description"] == "Which config."
    arguments = {"model_config": "a", "model_dump": "true", "_private": "2"}
    assert await configure.call(arguments, ctx_for("configure")) == "a/True/2"
    with pytest.raises(ToolArgumentsError) as info:
        await configure.call({"_private": "x"}, ctx_for("configure"))
    assert "model_config: Field required" in info.value.details
    assert "_private: Input should be a valid integer" in info.value.details


def test_var_positional_and_var_keyword_fail_at_decoration() -> None:
    def var_args(city: str, *extra: str) -> str:
        return city

    def var_kwargs(city: str, **options: str) -> str:
        return city

    with pytest.raises(ConfigError, match=r"'var_args': \*extra would never receive"):
        tool(var_args)
    with pytest.raises(ConfigError, match=r"'var_kwargs': \*\*options would never receive"):
        tool(var_kwargs)


async def test_optional_context_is_injected() -> None:
    @tool
    def maybe(city: str, ctx: Optional[ToolContext] = None) -> str:  # type: ignore[type-arg]  # noqa: UP045
        return f"{city}/{ctx.session_id if ctx else None}"

    @tool
    def maybe_deps(city: str, ctx: ToolContext[Deps] | None = None) -> str:
        return f"{city}/{ctx.deps.greeting if ctx else None}"

    ctx = ctx_for("maybe", Deps("Hi"))
    assert list(maybe.definition.parameters["properties"]) == ["city"]
    assert list(maybe_deps.definition.parameters["properties"]) == ["city"]
    assert await maybe.call({"city": "P"}, ctx) == "P/s1"
    assert await maybe_deps.call({"city": "P"}, ctx) == "P/Hi"


def test_pythonic_name_problems() -> None:
    @tool(name="get-weather")
    def weather(city: str) -> str:
        return city

    @tool(name="import")
    def importer(path: str) -> str:
        return path

    flights = ToolDefinition.from_json_schema(
        "search_flights",
        {"type": "object", "properties": {"from": {}, "to": {}, "ﬁle": {}}},
    )
    assert pythonic_name_problems(get_weather.definition) == []
    assert pythonic_name_problems(weather.definition) == [
        "tool name 'get-weather' is not a Python identifier"
    ]
    assert pythonic_name_problems(importer.definition) == [
        "tool name 'import' is not a Python identifier"
    ]
    assert pythonic_name_problems(flights) == [
        "tool 'search_flights': parameter 'from' is not a Python identifier",
        "tool 'search_flights': parameter 'ﬁle' is not a Python identifier",
    ]
