"""The text blocks of Llama 3.x system prompts: built-in tools, dates, custom-tool descriptions.

Each function returns exactly what Meta's reference templates (llama-stack ``system_prompts.py``)
render, byte for byte, so a model sees the prompt it was trained on. The templates are Jinja;
here they are plain string building, with the few Jinja behaviours that show in the output
reproduced on purpose (``tojson`` sorting keys and escaping ``<>&'``, ``None`` printed as
``None``, a default shown only when truthy).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from agentic.types import BuiltinTool, ToolDefinition, ToolParam

__all__ = [
    "KNOWLEDGE_CUTOFF",
    "builtin_tools_block",
    "date_block",
    "format_code_interpreter_result",
    "function_tag_tools_prompt",
    "json_tools_prompt",
    "python_list_function_description",
    "python_list_tools_prompt",
    "response_format_prompt",
    "tool_choice_prompt",
]

KNOWLEDGE_CUTOFF = "December 2023"

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _jinja_str(value: Any) -> str:
    """How ``{{ value }}`` prints in the reference templates: ``str()``, so ``None`` is "None"."""
    return str(value)


def _tojson(value: Any) -> str:
    """Jinja's ``tojson`` filter: sorted keys, and ``<>&'`` escaped as JSON unicode escapes."""
    text = json.dumps(value, sort_keys=True)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("'", "\\u0027")
    )


def date_block(today: _dt.date) -> str:
    """``Cutting Knowledge Date: December 2023\\nToday Date: 05 March 2025`` (``%d %B %Y``).

    Month names are spelled out here rather than with ``strftime("%B")``, which follows the
    process locale; the model was trained on English names.
    """
    day = f"{today.day:02d} {_MONTHS[today.month - 1]} {today.year}"
    return f"Cutting Knowledge Date: {KNOWLEDGE_CUTOFF}\nToday Date: {day}"


def builtin_tools_block(tools: Sequence[ToolDefinition]) -> str:
    """The ``Environment: ipython`` header for ``tools`` ("" when there are none).

    Built-in tools other than code_interpreter are listed on a ``Tools:`` line in the given
    order. Without such a line the header keeps a trailing newline, as the reference does,
    which is why a blank line follows it in the assembled system prompt.
    """
    if not tools:
        return ""
    names = [t.name for t in tools if t.is_builtin and t.name != BuiltinTool.code_interpreter]
    if not names:
        return "Environment: ipython\n"
    return "Environment: ipython\nTools: " + ", ".join(names).strip()


def _required_names(params: Sequence[ToolParam]) -> list[str]:
    return [p.name for p in params if p.required]


def _json_tool(tool: ToolDefinition) -> str:
    """One tool of the 3.1 ``json`` prompt: every parameter typed "object", properties a list."""
    params = tool.params()
    props = ",".join(
        "\n                {\n"
        f'                    "{p.name}": {{\n'
        '                        "type": "object",\n'
        f'                        "description": "{_jinja_str(p.description)}"\n'
        "                    }\n"
        "                }"
        for p in params
    )
    return (
        "{\n"
        '    "type": "function",\n'
        '    "function": {\n'
        f'        "name": "{tool.name}",\n'
        f'        "description": "{tool.description}",\n'
        '        "parameters": {\n'
        '            "type": "object",\n'
        f'            "properties": [{props}\n'
        "            ],\n"
        f'            "required": {_tojson(_required_names(params))}\n'
        "        }\n"
        "    }\n"
        "}\n"
    )


def json_tools_prompt(tools: Sequence[ToolDefinition]) -> str:
    """The Llama 3.1 ``json`` custom-tool prompt (sent as a user message)."""
    return (
        "Answer the user's question by making use of the following functions if needed.\n"
        "If none of the function can be used, please say so.\n"
        "Here is a list of functions in JSON format:\n"
        + "".join(_json_tool(t) for t in tools)
        + "\nReturn function calls in JSON format."
    )


def _function_tag_params(params: Sequence[ToolParam]) -> dict[str, dict[str, Any]]:
    """The parameter objects as the reference dumps them, ``default`` removed."""
    return {
        p.name: {"param_type": p.param_type, "description": p.description, "required": p.required}
        for p in params
    }


_FUNCTION_TAG_RULES = """\
Think very carefully before calling functions.
If you choose to call a function ONLY reply in the following format with no prefix or suffix:

<function=example_function_name>{"example_name": "example_value"}</function>

Reminder:
- If looking for real time information use relevant functions before falling back to brave_search
- Function calls MUST follow the specified format, start with <function= and end with </function>
- Required parameters MUST be specified
- Only call one function at a time
- Put the entire function call reply on one line"""


def function_tag_tools_prompt(tools: Sequence[ToolDefinition]) -> str:
    """The Llama 3.1 ``function_tag`` custom-tool prompt (sent as a user message)."""
    blocks = "".join(
        f"Use the function '{t.name}' to '{t.description}':\n"
        f'{{"name": "{t.name}", "description": "{t.description}", '
        f'"parameters": {_tojson(_function_tag_params(t.params()))}}}\n\n'
        for t in tools
    )
    return "You have access to the following functions:\n\n" + blocks + _FUNCTION_TAG_RULES


def _python_list_param(param: ToolParam) -> str:
    default = ""
    if param.default:  # the reference omits falsy defaults (0, False, "") and always quotes
        default = f',\n                    "default": "{_jinja_str(param.default)}"'
    return (
        f'\n                "{param.name}": {{\n'
        f'                    "type": "{param.param_type}",\n'
        f'                    "description": "{_jinja_str(param.description)}"{default}\n'
        "                }"
    )


def _python_list_tool(tool: ToolDefinition) -> str:
    params = tool.params()
    props = ",".join(_python_list_param(p) for p in params)
    return (
        "{\n"
        f'        "name": "{tool.name}",\n'
        f'        "description": "{tool.description}",\n'
        '        "parameters": {\n'
        '            "type": "dict",\n'
        f'            "required": {_tojson(_required_names(params))},\n'
        f'            "properties": {{{props}\n'
        "            }\n"
        "        }\n"
        "    }"
    )


def python_list_function_description(tools: Sequence[ToolDefinition]) -> str:
    """The tool list of the Llama 3.2 ``python_list`` prompt, with its closing paragraph."""
    listed = ",\n    ".join(_python_list_tool(t) for t in tools)
    return (
        "Here is a list of functions in JSON format that you can invoke.\n\n"
        f"[\n    {listed}\n]\n\n"
        "You can answer general questions or invoke tools when necessary.\n"
        "In addition to tool calls, you should also augment your responses by using the tool"
        " outputs."
    )


_PYTHON_LIST_INTRO = """\
You are a helpful assistant. You have access to functions, but you should only use them if they \
are required.
You are an expert in composing functions. You are given a question and a set of possible \
functions.
Based on the question, you may or may not need to make one function/tool call to achieve the \
purpose.

If you decide to invoke any of the function(s), you MUST put it in the format of \
[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]
If you decide to invoke a function, you SHOULD NOT include any other text in the response. \
besides the function call in the above format.
For a boolean parameter, be sure to use `True` or `False` (capitalized) for the value.


"""


def python_list_tools_prompt(tools: Sequence[ToolDefinition]) -> str:
    """The current default Llama 3.2 / 3.3 ``python_list`` system prompt for custom tools."""
    return _PYTHON_LIST_INTRO + python_list_function_description(tools)


def tool_choice_prompt(tool_choice: str) -> str:
    """The sentence that forces a tool call: "" for ``auto`` and ``none``."""
    if tool_choice in ("auto", "none"):
        return ""
    if tool_choice == "required":
        return "You MUST use one of the provided functions/tools to answer the user query."
    return f"You MUST use the tool `{tool_choice}` to answer the user query."


def response_format_prompt(schema: Mapping[str, Any]) -> str:
    """The user message that asks for JSON output following ``schema``."""
    return f"Please respond in JSON format with the schema: {json.dumps(schema)}"


def format_code_interpreter_result(*, success: bool, stdout: str, stderr: str) -> str:
    """A code-interpreter result as Llama was trained to read it in an ``ipython`` message.

    ``completed`` or ``failed``, then ``[stdout]...[/stdout]`` and ``[stderr]...[/stderr]``
    lines for the streams that are not empty.
    """
    out = "completed" if success else "failed"
    if stdout:
        out += f"\n[stdout]{stdout}[/stdout]"
    if stderr:
        out += f"\n[stderr]{stderr}[/stderr]"
    return out
