from __future__ import annotations

from typing import Literal

import pytest

from agentic._functions import function_schema
from agentic.errors import ConfigError
from agentic.types import ToolDefinition


class Ctx:
    pass


def get_weather(ctx: Ctx, city: str, unit: Literal["c", "f"] = "c", days: int = 1) -> str:
    """Get the weather forecast.

    Looks it up in the weather service.

    Args:
        city: The city name,
            with country if ambiguous.
        unit (str): Temperature unit.

    Returns:
        The forecast.
    """
    return city


def sphinx(query: str, limit: int = 5) -> list[str]:
    """Search things.

    :param query: what to look for
    :param int limit: how many
    :returns: hits
    """
    return []


def test_google_docstring_and_hints() -> None:
    fs = function_schema(get_weather, skip_types=[Ctx])
    assert fs.name == "get_weather"
    assert fs.description == "Get the weather forecast.\n\nLooks it up in the weather service."
    props = fs.parameters["properties"]
    assert list(props) == ["city", "unit", "days"]
    assert props["city"] == {
        "type": "string",
        "description": "The city name, with country if ambiguous.",
    }
    assert props["unit"]["enum"] == ["c", "f"]
    assert props["unit"]["default"] == "c"
    assert fs.parameters["required"] == ["city"]


def test_sphinx_docstring_and_skip_by_name() -> None:
    fs = function_schema(sphinx, skip=["limit"])
    assert fs.description == "Search things."
    assert list(fs.parameters["properties"]) == ["query"]
    assert fs.parameters["properties"]["query"]["description"] == "what to look for"


def test_no_docstring_and_tool_definition() -> None:
    def bare(x: int) -> int:
        return x

    fs = function_schema(bare)
    assert fs.description == ""
    assert list(fs.parameters["properties"]) == ["x"]
    tool = ToolDefinition.from_function(sphinx, name="search")
    assert tool.name == "search"
    assert [p.name for p in tool.params()] == ["query", "limit"]


def test_errors() -> None:
    with pytest.raises(ConfigError, match="needs a name"):
        function_schema(lambda x: x)

    def broken(x: "Undefined") -> None:  # type: ignore[name-defined]  # noqa: F821, UP037
        pass

    with pytest.raises(ConfigError, match="type hint"):
        function_schema(broken)


def test_a_client_tool_described_from_a_function_refuses_star_parameters() -> None:
    def lookup(city: str, **filters: str) -> str:
        return city

    with pytest.raises(ConfigError, match=r"'lookup': \*\*filters would never receive"):
        ToolDefinition.from_function(lookup)
