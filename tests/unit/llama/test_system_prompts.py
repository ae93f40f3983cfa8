"""The system-prompt text blocks, byte for byte against the reference texts."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Literal

import pytest
from helpers import TRENDING, schema_tool
from pydantic import BaseModel

from agentic.llama import render_prompt
from agentic.llama import system_prompts as sp
from agentic.tools import tool
from agentic.types import ToolDefinition, UserMessage

WEATHER = schema_tool(
    "get_weather",
    "Get weather info for places",
    {
        "city": {"type": "string", "description": "The name of the city to get the weather for"},
        "metric": {
            "type": "string",
            "description": "The metric for weather. Options are: celsius, fahrenheit",
            "default": "celsius",
        },
    },
    ["city"],
)

TRENDING_JSON = """\
Answer the user's question by making use of the following functions if needed.
If none of the function can be used, please say so.
Here is a list of functions in JSON format:
{
    "type": "function",
    "function": {
        "name": "trending_songs",
        "description": "Returns the trending songs on a Music site",
        "parameters": {
            "type": "object",
            "properties": [
                {
                    "n": {
                        "type": "object",
                        "description": "The number of songs to return"
                    }
                },
                {
                    "genre": {
                        "type": "object",
                        "description": "The genre of the songs to return"
                    }
                }
            ],
            "required": ["n"]
        }
    }
}

Return function calls in JSON format."""

FUNCTION_TAG_RULES = """\
Think very carefully before calling functions.
If you choose to call a function ONLY reply in the following format with no prefix or suffix:

<function=example_function_name>{"example_name": "example_value"}</function>

Reminder:
- If looking for real time information use relevant functions before falling back to brave_search
- Function calls MUST follow the specified format, start with <function= and end with </function>
- Required parameters MUST be specified
- Only call one function at a time
- Put the entire function call reply on one line"""

TRENDING_FUNCTION_TAG = (
    "You have access to the following functions:\n\n"
    "Use the function 'trending_songs' to 'Returns the trending songs on a Music site':\n"
    '{"name": "trending_songs", "description": "Returns the trending songs on a Music site", '
    '"parameters": {"genre": {"description": "The genre of the songs to return", '
    '"param_type": "str", "required": false}, "n": {"description": "The number of songs to '
    'return", "param_type": "int", "required": true}}}\n\n' + FUNCTION_TAG_RULES
)

PYTHON_LIST_INTRO = """\
You are a helpful assistant. You have access to functions, but you should only use them if they are required.
You are an expert in composing functions. You are given a question and a set of possible functions.
Based on the question, you may or may not need to make one function/tool call to achieve the purpose.

If you decide to invoke any of the function(s), you MUST put it in the format of [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]
If you decide to invoke a function, you SHOULD NOT include any other text in the response. besides the function call in the above format.
For a boolean parameter, be sure to use `True` or `False` (capitalized) for the value.


"""  # noqa: E501

PYTHON_LIST_OUTRO = """

You can answer general questions or invoke tools when necessary.
In addition to tool calls, you should also augment your responses by using the tool outputs."""

WEATHER_ITEM = """\
{
        "name": "get_weather",
        "description": "Get weather info for places",
        "parameters": {
            "type": "dict",
            "required": ["city"],
            "properties": {
                "city": {
                    "type": "string",
                    "description": "The name of the city to get the weather for"
                },
                "metric": {
                    "type": "string",
                    "description": "The metric for weather. Options are: celsius, fahrenheit",
                    "default": "celsius"
                }
            }
        }
    }"""

WEATHER_PYTHON_LIST = (
    PYTHON_LIST_INTRO
    + "Here is a list of functions in JSON format that you can invoke.\n\n[\n    "
    + WEATHER_ITEM
    + "\n]"
    + PYTHON_LIST_OUTRO
)


@pytest.mark.parametrize(
    ("day", "text"),
    [
        (dt.date(2024, 9, 21), "21 September 2024"),
        (dt.date(2025, 3, 5), "05 March 2025"),
        (dt.datetime(2024, 12, 1, 23, 59), "01 December 2024"),
    ],
)
def test_date_block_uses_zero_padded_day_and_english_month(day: dt.date, text: str) -> None:
    assert sp.date_block(day) == f"Cutting Knowledge Date: December 2023\nToday Date: {text}"


@pytest.mark.parametrize(
    ("names", "block"),
    [
        (
            ["code_interpreter", "brave_search", "wolfram_alpha"],
            "Environment: ipython\nTools: brave_search, wolfram_alpha",
        ),
        (["wolfram_alpha", "photogen"], "Environment: ipython\nTools: wolfram_alpha, photogen"),
        (["code_interpreter"], "Environment: ipython\n"),
        (["my_custom_tool"], "Environment: ipython\n"),
        ([], ""),
    ],
)
def test_builtin_tools_block(names: list[str], block: str) -> None:
    tools = [ToolDefinition(name=n) for n in names]
    assert sp.builtin_tools_block(tools) == block


def test_json_prompt_matches_reference_trending_songs() -> None:
    assert sp.json_tools_prompt([TRENDING]) == TRENDING_JSON


def test_json_prompt_several_tools_and_empty_parameters() -> None:
    empty = ToolDefinition(name="ping", description="Ping")
    text = sp.json_tools_prompt([TRENDING, empty])
    tail = (
        '}\n{\n    "type": "function",\n    "function": {\n        "name": "ping",\n'
        '        "description": "Ping",\n        "parameters": {\n            "type": "object",\n'
        '            "properties": [\n            ],\n            "required": []\n        }\n'
        "    }\n}\n\nReturn function calls in JSON format."
    )
    assert text.endswith(tail)
    assert text.count('"type": "function"') == 2


def test_json_prompt_param_without_description_prints_none_like_the_reference() -> None:
    tool = schema_tool("f", "d", {"x": {"type": "integer"}}, [])
    assert '"x": {\n                        "type": "object",\n' in sp.json_tools_prompt([tool])
    assert '"description": "None"' in sp.json_tools_prompt([tool])


def test_function_tag_prompt_matches_reference_trending_songs() -> None:
    assert sp.function_tag_tools_prompt([TRENDING]) == TRENDING_FUNCTION_TAG


def test_function_tag_prompt_escapes_like_jinja_tojson_and_drops_default() -> None:
    tool = schema_tool(
        "q",
        "A & B <c> 'd'",
        {"s": {"type": "string", "description": "x<y & it's", "default": "zz"}},
        ["s"],
    )
    text = sp.function_tag_tools_prompt([tool, TRENDING])
    expected_first = (
        "Use the function 'q' to 'A & B <c> 'd'':\n"
        '{"name": "q", "description": "A & B <c> \'d\'", "parameters": {"s": {"description": '
        '"x\\u003cy \\u0026 it\\u0027s", "param_type": "string", "required": true}}}\n\n'
        "Use the function 'trending_songs'"
    )
    assert expected_first in text
    assert "zz" not in text
    assert text.endswith("}}}\n\n" + FUNCTION_TAG_RULES)


def test_python_list_prompt_matches_reference_get_weather() -> None:
    assert sp.python_list_tools_prompt([WEATHER]) == WEATHER_PYTHON_LIST


def test_python_list_several_tools_and_default_rules() -> None:
    limits = schema_tool(
        "limits",
        "Limits",
        {
            "a": {"type": "integer", "default": 5},
            "b": {"type": "integer", "default": 0},
            "c": {"type": "boolean", "default": False},
            "d": {"type": "string", "default": ""},
            "e": {"type": "boolean", "default": True},
        },
        [],
    )
    text = sp.python_list_function_description([WEATHER, limits])
    assert '    },\n    {\n        "name": "limits"' in text
    assert '"type": "integer",\n                    "description": "None",\n' in text
    assert '"default": "5"' in text
    assert '"default": "True"' in text
    assert text.count('"default"') == 3  # celsius, 5, True: falsy defaults are left out
    assert '"required": [],' in text


def test_python_list_description_stands_alone() -> None:
    text = sp.python_list_function_description([WEATHER])
    assert text.startswith("Here is a list of functions in JSON format that you can invoke.\n\n[")
    assert sp.python_list_tools_prompt([WEATHER]) == PYTHON_LIST_INTRO + text


@pytest.mark.parametrize(
    ("choice", "sentence"),
    [
        ("auto", ""),
        ("none", ""),
        ("required", "You MUST use one of the provided functions/tools to answer the user query."),
        ("get_weather", "You MUST use the tool `get_weather` to answer the user query."),
    ],
)
def test_tool_choice_prompt(choice: str, sentence: str) -> None:
    assert sp.tool_choice_prompt(choice) == sentence


def test_response_format_prompt_uses_plain_json_dumps() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    assert sp.response_format_prompt(schema) == (
        "Please respond in JSON format with the schema: "
        '{"type": "object", "properties": {"name": {"type": "string"}}}'
    )


@pytest.mark.parametrize(
    ("success", "stdout", "stderr", "text"),
    [
        (
            True,
            '{"results":["something something"]}',
            "",
            'completed\n[stdout]{"results":["something something"]}[/stdout]',
        ),
        (False, "", "boom", "failed\n[stderr]boom[/stderr]"),
        (True, "", "", "completed"),
        (False, "out\n", "err", "failed\n[stdout]out\n[/stdout]\n[stderr]err[/stderr]"),
    ],
)
def test_code_interpreter_result(success: bool, stdout: str, stderr: str, text: str) -> None:
    assert sp.format_code_interpreter_result(success=success, stdout=stdout, stderr=stderr) == text


class Unit(Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Address(BaseModel):
    street: str
    zip_code: str | None = None


def test_what_a_parameters_type_does_not_say_goes_into_its_description() -> None:
    @tool
    def ship(
        address: Address,
        unit: Unit,
        speed: Literal["slow", "express"] = "slow",
        items: list[int] | None = None,
        note: str = "",
    ) -> str:
        """Ship a parcel.

        Args:
            address: Where to.
            unit: Temperature unit.
            speed: Shipping speed.
            items: Item ids.
            note: A note.
        """
        return ""

    params = {p.name: p for p in ship.definition.params()}
    assert params["address"].param_type == "object"  # a $ref followed
    assert params["address"].description == (
        "Where to. An object with street (string, required); zip_code (string | null)."
    )
    assert params["unit"].description == "Temperature unit. One of: 'celsius', 'fahrenheit'."
    assert params["speed"].description == "Shipping speed. One of: 'slow', 'express'."
    assert params["items"].description == "Item ids. A list of integer."
    assert params["note"].description == "A note."  # a plain type says it all
    for model in ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.2-3B-Instruct"):
        prompt = render_prompt([UserMessage(content="x")], model=model, tools=[ship.definition])
        assert "One of: 'slow', 'express'." in prompt
        assert "zip_code (string | null)" in prompt
