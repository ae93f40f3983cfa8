"""Tool calls in Llama's own syntax: encoding calls into history, parsing them out of raw text.

:func:`parse_completion` turns one raw completion into an :class:`AssistantMessage`, following
Meta's reference parser (``reference/llama_prompt_format.md`` §4): spaces stripped, a leading
assistant header and ``<|python_tag|>`` removed, a trailing ``<|eot_id|>``/``<|eom_id|>`` read as
the stop reason, then the first format that matches: a whole-body JSON call, a whole-body
pythonic list, ``<function=...>`` tags or ``name.call(query="...")`` anywhere, else code after
``<|python_tag|>``. It never raises: anything malformed is plain text.

Deliberate differences from the reference, each for a case a user would hit:

- Every call is kept (several pythonic calls, function tags or ``.call(query=...)``, JSON
  objects separated by ``;`` or whitespace as vLLM's ``llama3_json`` accepts), not only the first.
- Arguments may nest in every format; ``<function=...>`` arguments are read with a real JSON
  decoder, so nested objects, several lines and apostrophes in values work (the reference's
  regex stops at the first ``}`` and turns every ``'`` into ``"``; that lenient form is still
  the fallback for single-quoted pseudo-JSON). JSON calls may say ``arguments`` instead of
  ``parameters``, as an object or a JSON string. Values must be JSON data (no NaN, sets or
  bytes). Where the reference raises (a JSON call without arguments, a bare name as a value),
  the output is text.
- Pythonic lists in a row (``[a(x=1)][b(y=2)]``) are calls too: that is how the reference
  writes a message's several calls into the history, so a model may answer that way.
- Whole-body JSON and pythonic lists are tried before the searches anywhere in the text, so a
  call whose string argument quotes ``<function=...>`` is that call, not the quoted one.
- A custom call to a built-in name keeps the argument the tool expects (``query``, or ``code``
  for code_interpreter, which the reference turns into ``query``) when present, else the first.
- Text before ``<|python_tag|>`` and the call after it (JSON, a pythonic list, code) is the
  content and the call; the reference reads a tag only at the very start.
- Text around calls found anywhere (``Let me check.<|python_tag|>brave_search.call(...)``) is
  the message content, with trailing whitespace removed; the reference clears it. Whole-body
  formats and code still leave the content empty. This keeps streamed text and the final
  message in agreement: text shown while streaming is never retracted.
- A model that takes no tools in the capability table (base and guard models) never yields a
  call; only the header and stop token are handled.

:class:`StreamingToolCallParser` does the same incrementally: it releases text as soon as it
cannot be part of a call and announces each call once it is certain.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Final, Literal, TypeAlias

from agentic.errors import UnknownModelError, UserError
from agentic.llama.models import ModelSpec, resolve_model
from agentic.llama.tokens import END_HEADER, END_OF_MESSAGE, END_OF_TURN, PYTHON_TAG, START_HEADER
from agentic.types import (
    AssistantMessage,
    BuiltinTool,
    StopReason,
    ToolCall,
    ToolPromptFormat,
)

__all__ = [
    "StreamEvent",
    "StreamingToolCallParser",
    "TextChunk",
    "ToolCallChunk",
    "encode_tool_call",
    "opens_like_call",
    "parse_completion",
]


def _py_value(value: Any) -> str:
    """A value as Llama 3.2's pythonic calls write it (strings unescaped, dicts as ``{k=v}``)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return f"[{', '.join(_py_value(v) for v in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_py_value(v)}" for k, v in value.items()) + "}"
    return str(value)  # int, float, bool, None: as Python prints them


def encode_tool_call(call: ToolCall, fmt: ToolPromptFormat) -> str:
    """How a past call appears in an assistant message of the history (no separators)."""
    builtin = call.builtin
    if builtin is BuiltinTool.code_interpreter:
        return str(call.arguments.get("code", ""))
    if builtin is not None:
        return f'{builtin.value}.call(query="{call.arguments.get("query", "")}")'
    if fmt is ToolPromptFormat.json:
        return json.dumps(
            {"type": "function", "name": call.tool_name, "parameters": call.arguments}
        )
    if fmt is ToolPromptFormat.function_tag:
        return f"<function={call.tool_name}>{json.dumps(call.arguments)}</function>"
    args = ", ".join(f"{k}={_py_value(v)}" for k, v in call.arguments.items())
    return f"[{call.tool_name}({args})]"


# --- syntax ---------------------------------------------------------------------------------


class _More(Enum):
    """Verdict of a check on a growing text: not decided yet, more text may complete it."""

    MORE = "more"


_MORE: Final = _More.MORE
_Verdict: TypeAlias = "list[ToolCall] | Literal[_More.MORE] | None"


def _prefix_pattern(literal: str) -> str:
    """A regex matching any prefix of ``literal``, the empty one included."""
    out = ""
    for ch in reversed(literal):
        out = f"(?:{re.escape(ch)}{out})?"
    return out


_ASSISTANT_HEADER: Final = f"{START_HEADER}assistant{END_HEADER}\n\n"
_STOP_REASONS: Final = (
    (END_OF_TURN, StopReason.end_of_turn),
    (END_OF_MESSAGE, StopReason.end_of_message),
)
_BUILTIN_ARGUMENT: Final = {
    BuiltinTool.brave_search.value: "query",
    BuiltinTool.wolfram_alpha.value: "query",
    BuiltinTool.photogen.value: "query",
    BuiltinTool.code_interpreter.value: "code",
}

_WS = re.compile(r"\s*")
_NAME = r"[^\s<>{}=\"']+"
_FUNC_HEAD = re.compile(rf"<function=({_NAME})>\s*")
_FUNC_HEAD_PARTIAL = re.compile(rf"<function=(?:{_NAME}(?:>\s*)?)?")
_FUNC_CLOSE = re.compile(r"\s*</function>")
_FUNC_CLOSE_PARTIAL = re.compile(r"\s*" + _prefix_pattern("</function>"))
_LENIENT_ARGS = re.compile(r"\{.*?\}")  # the reference's form: up to the first "}" on the line
_BUILTIN_CALL = re.compile(r'(\w+)\.call\(query="([^"]*)"\)')
_BUILTIN_PARTIAL = re.compile(
    r'\w+(?:\.call\(query="[^"]*"?|' + _prefix_pattern('.call(query="') + ")"
)
# Where a call may start: "<" (function tag, python tag), a word before ".call(", or a word at
# the very end of the text that may still grow into one.
_CANDIDATE = re.compile(r"<|\b\w+(?=\.call\()|\b\w+(?=" + _prefix_pattern(".call") + r"\Z)")
_JSON_BAD_HEAD = re.compile(r'\{\s*[^\s"}]')
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|(?P<open>").*|[{}\[\]]', re.DOTALL)
_PYLIST_HEAD = re.compile(r"\[\s*(?:\Z|[^\W\d]\w*\s*(?:\Z|\())")
_PY_TOKENS = re.compile(
    r"""'''(?:[^'\\]|\\.|'(?!''))*'''|\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\""""
    r"""|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|(?P<open>['"])|[\[\](){}]""",
    re.DOTALL,
)
_DECODER: Final = json.JSONDecoder()
_PARSE_ERRORS: Final = (SyntaxError, ValueError, TypeError, MemoryError, RecursionError)


# --- calls ----------------------------------------------------------------------------------


class _NotJSON(Exception):
    """A parsed value that JSON cannot carry (a set, bytes, NaN, a non-string key...)."""


def _plain(value: Any) -> Any:
    """``value`` as JSON-compatible data (tuples become lists); raises :class:`_NotJSON`."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    raise _NotJSON


def _make_call(name: Any, arguments: Any) -> ToolCall | None:
    """A call from a parsed name and arguments, or None when they cannot form one.

    A built-in name gets the one argument that tool takes: the one so named, else the first.
    """
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        return None
    try:
        args: dict[str, Any] = _plain(arguments)
    except (_NotJSON, RecursionError):
        return None
    key = _BUILTIN_ARGUMENT.get(name)
    if key is not None:
        if not args:
            return None
        args = {key: args[key] if key in args else next(iter(args.values()))}
    return ToolCall(tool_name=name, arguments=args)


# --- whole-body JSON --------------------------------------------------------------------------


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _json_extent(text: str, pos: int) -> int | Literal[_More.MORE] | None:
    """Where the object starting at ``text[pos]`` (a ``{``) closes, by its brackets and strings
    alone; MORE when it is still open at the end of ``text``, None when it cannot be JSON. Lets
    a streaming parse skip the decoder (and its error) until an object may be complete."""
    if _JSON_BAD_HEAD.match(text, pos):
        return None
    depth = 0
    for token in _JSON_TOKENS.finditer(text, pos):
        if token.group("open") is not None:
            return _MORE  # a string still being written
        mark = token.group()
        if mark in "{[":
            depth += 1
        elif mark in "}]":
            depth -= 1
            if depth <= 0:
                return token.end()
    return _MORE


def _json_object_at(
    text: str, pos: int, *, final: bool
) -> tuple[dict[str, Any], int] | Literal[_More.MORE] | None:
    """The JSON object starting at ``pos`` and where it ends, MORE if unfinished, else None."""
    if not final and _json_extent(text, pos) is _MORE:
        return _MORE
    try:
        value, end = _DECODER.raw_decode(text, pos)
    except (ValueError, RecursionError):
        return None
    return (value, end) if isinstance(value, dict) else None


def _call_from_json(obj: dict[str, Any]) -> ToolCall | None:
    """``{"name": ..., "parameters"|"arguments": {...}}`` (arguments may be a JSON string)."""
    if "name" not in obj:
        return None
    args = obj["parameters"] if "parameters" in obj else obj.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            return None
    return _make_call(obj["name"], args)


def _json_calls(text: str, *, final: bool) -> _Verdict:
    """Calls when the whole text is JSON call objects, separated by ``;`` or whitespace."""
    calls: list[ToolCall] = []
    pos = _skip_ws(text, 0)
    while True:
        if pos == len(text):
            return None if final else _MORE
        if text[pos] != "{":
            return None
        found = _json_object_at(text, pos, final=final)
        if found is None or found is _MORE:
            return found
        call = _call_from_json(found[0])
        if call is None:
            return None
        calls.append(call)
        pos = _skip_ws(text, found[1])
        if pos == len(text):
            return calls if final else _MORE
        if text[pos] == ";":
            pos = _skip_ws(text, pos + 1)


# --- whole-body pythonic list -----------------------------------------------------------------


def _calls_from_list(node: ast.List) -> list[ToolCall] | None:
    """``[f(a=1), g(b="x")]``: bare names, keyword arguments, literal values; else None."""
    calls: list[ToolCall] = []
    for element in node.elts:
        if not isinstance(element, ast.Call) or not isinstance(element.func, ast.Name):
            return None
        if element.args or any(kw.arg is None for kw in element.keywords):
            return None
        try:
            args = {kw.arg: ast.literal_eval(kw.value) for kw in element.keywords}
        except _PARSE_ERRORS:
            return None
        call = _make_call(element.func.id, args)
        if call is None:
            return None
        calls.append(call)
    return calls or None


def _whole_list(text: str) -> ast.List | None:
    """The list display that is exactly ``text``, or None."""
    try:
        node = ast.parse(text, mode="eval").body
    except _PARSE_ERRORS:
        return None
    if isinstance(node, ast.List) and ast.get_source_segment(text, node) == text:
        return node
    return None


def _pylist_calls(text: str, *, final: bool) -> _Verdict:
    """Calls when the whole text is pythonic lists of calls; while streaming, MORE until
    decided. Several lists in a row (``[a(x=1)][b(y=2)]``) are how the reference writes a
    message's calls into the history, so a model may well answer that way too."""
    head = text.strip() if final else text.lstrip()
    if not _PYLIST_HEAD.match(head):
        return None
    calls: list[ToolCall] = []
    start = depth = 0
    for token in _PY_TOKENS.finditer(head):
        mark = token.group()
        if token.group("open") is not None:
            return None if final else _MORE  # a string still open
        if mark[0] in "'\"":
            continue
        depth += 1 if mark in "([{" else -1
        if depth > 0:
            continue
        node = _whole_list(head[start : token.end()])
        found = _calls_from_list(node) if node is not None else None
        if found is None:
            return None
        calls += found
        after = _skip_ws(head, token.end())
        if after == len(head):
            return calls if final else _MORE
        if not _PYLIST_HEAD.match(head, after):
            return None  # text after the calls: an answer that merely starts with one
        start = after
    return None if final else _MORE


def _whole_body_calls(body: str, *, final: bool) -> _Verdict:
    """Calls when the whole body is one JSON or pythonic-list call block."""
    start = _skip_ws(body, 0)
    if start == len(body):
        return None if final else _MORE
    if body[start] == "{":
        return _json_calls(body, final=final)
    if body[start] == "[":
        return _pylist_calls(body, final=final)
    return None


# --- calls anywhere: <function=...>, name.call(query="..."), each maybe after <|python_tag|> ---


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    call: ToolCall


_Found: TypeAlias = "_Span | Literal[_More.MORE] | None"


def _function_args(body: str, pos: int, *, final: bool) -> tuple[Any, int] | _More | None:
    """The arguments object after ``<function=name>``: JSON, else the reference's lenient form."""
    found = _json_object_at(body, pos, final=final)
    if found is not None:
        return found
    lenient = _LENIENT_ARGS.match(body, pos)
    if lenient is None:
        return None if final or "\n" in body[pos:] else _MORE
    try:
        return json.loads(lenient.group().replace("'", '"')), lenient.end()
    except (ValueError, RecursionError):
        return None


def _function_tag_at(body: str, pos: int, *, final: bool) -> _Found:
    """``<function=name>{...}`` (``</function>`` optional) starting at ``pos``."""
    head = _FUNC_HEAD.match(body, pos)
    if head is None:
        rest = body[pos:]
        partial = "<function=".startswith(rest) or _FUNC_HEAD_PARTIAL.fullmatch(rest)
        return _MORE if partial and not final else None
    start = head.end()
    if start == len(body):
        return None if final else _MORE
    if body[start] != "{":
        return None
    found = _function_args(body, start, final=final)
    if found is None or found is _MORE:
        return found
    args, end = found
    close = _FUNC_CLOSE.match(body, end)
    if close is not None:
        end = close.end()
    elif not final and _FUNC_CLOSE_PARTIAL.fullmatch(body, end):
        return _MORE
    call = _make_call(head.group(1), args)
    return _Span(pos, end, call) if call is not None else None


def _builtin_at(body: str, pos: int, *, final: bool) -> _Found:
    """``name.call(query="...")`` starting at ``pos`` (any identifier, as in the reference)."""
    match = _BUILTIN_CALL.match(body, pos)
    if match is not None:
        call = _make_call(match.group(1), {"query": match.group(2)})
        return _Span(pos, match.end(), call) if call is not None else None
    return _MORE if not final and _BUILTIN_PARTIAL.fullmatch(body, pos) else None


def _call_at(body: str, pos: int, *, final: bool) -> _Found:
    """A call starting at ``pos``; a ``<|python_tag|>`` right before a call belongs to it."""
    if body.startswith(PYTHON_TAG, pos):
        after = pos + len(PYTHON_TAG)
        if after == len(body):
            return None if final else _MORE
        at = _function_tag_at if body[after] == "<" else _builtin_at
        inner = at(body, after, final=final)
        if inner is None and not final:
            return _MORE  # JSON, a pythonic list or code after the tag: read when it ends
        return replace(inner, start=pos) if isinstance(inner, _Span) else inner
    if body[pos] != "<":
        return _builtin_at(body, pos, final=final)
    rest = body[pos : pos + len(PYTHON_TAG)]
    if not final and len(rest) < len(PYTHON_TAG) and PYTHON_TAG.startswith(rest):
        return _MORE
    return _function_tag_at(body, pos, final=final)


def _scan(body: str, start: int, *, final: bool) -> tuple[list[_Span], int]:
    """Calls found anywhere from ``start``, and where an undecided one begins (else the end)."""
    spans: list[_Span] = []
    pos = start
    for candidate in _CANDIDATE.finditer(body, start):
        if candidate.start() < pos:
            continue
        found = _call_at(body, candidate.start(), final=final)
        if found is _MORE:
            return spans, candidate.start()
        if found is not None:
            spans.append(found)
            pos = found.end
    return spans, len(body)


# --- one completion ---------------------------------------------------------------------------


def _takes_tools(model: str | ModelSpec | None) -> bool:
    """False only for a known model that takes no tools (base and guard models)."""
    if model is None:
        return True
    try:
        spec = resolve_model(model)
    except UnknownModelError:
        return True
    return bool(spec.tool_formats) or spec.builtin_tools


def _prelude(text: str, stop_reason: StopReason | None) -> tuple[str, bool, StopReason]:
    """Steps 1-4 of the reference: spaces, assistant header, python tag, stop token."""
    body = text.strip(" ").removeprefix(_ASSISTANT_HEADER)
    ipython = body.startswith(PYTHON_TAG)
    body = body.removeprefix(PYTHON_TAG)
    for token, reason in _STOP_REASONS:
        if body.endswith(token):
            return body[: -len(token)], ipython, reason
    return body, ipython, stop_reason or StopReason.end_of_turn


def _parse_body(body: str, *, ipython: bool, code: bool = True) -> tuple[str, list[ToolCall]]:
    """The content and calls of a body whose prelude was handled."""
    whole = _whole_body_calls(body, final=True)
    if isinstance(whole, list):
        return "", whole
    spans, _ = _scan(body, 0, final=True)
    if spans:
        outside, pos = [], 0
        for span in spans:
            outside.append(body[pos : span.start])
            pos = span.end
        outside.append(body[pos:])
        return "".join(outside).rstrip(), [span.call for span in spans]
    if ipython and code:
        run = ToolCall(tool_name=BuiltinTool.code_interpreter.value, arguments={"code": body})
        return "", [run]
    tag = body.find(PYTHON_TAG)
    if tag > 0:  # text, then the tag and a call: the text is the content
        rest, calls = _parse_body(body[tag + len(PYTHON_TAG) :], ipython=True, code=code)
        if calls and not rest:
            return body[:tag].rstrip(), calls
    return body, []


def parse_completion(
    text: str,
    *,
    model: str | ModelSpec | None = None,
    stop_reason: StopReason | None = None,
    tools: bool = True,
    code_interpreter: bool = True,
) -> AssistantMessage:
    """The assistant message in a raw completion (special tokens kept); never raises.

    ``stop_reason`` is what the server reported; a trailing ``<|eot_id|>``/``<|eom_id|>`` in the
    text overrides it, and it defaults to ``end_of_turn``. ``model`` (an id, alias or spec) only
    matters for known models that take no tools: their text is never a call. ``tools=False``
    reads the text as an answer whatever it looks like (no tools were offered).
    ``code_interpreter=False`` (not offered) keeps text after ``<|python_tag|>`` that is no
    call as content instead of reading it as code to run.
    """
    body, ipython, reason = _prelude(text, stop_reason)
    takes = tools and _takes_tools(model)
    content, calls = (
        _parse_body(body, ipython=ipython, code=code_interpreter) if takes else (body, [])
    )
    return AssistantMessage(content=content, tool_calls=calls, stop_reason=reason)


_WHOLE_CALL_OPENING = re.compile(r'\s*(?:\{\s*"(?:name|type|function)"|\[\s*[^\W\d]\w*\s*\()')
_CALL_OPENING = re.compile(r'\s*(?:\{\s*"(?:name|type|function)"|\[\s*[^\W\d]\w*\s*\(|<function=)')
_BUILTIN_OPENING = re.compile(r"\s*\w+\.call\(")


def opens_like_call(text: str) -> bool:
    """Whether a raw completion that parsed as no call starts the way a call does.

    Tells a call the model botched (``[get_weather(city=Paris)]``, a JSON object cut short,
    anything after ``<|python_tag|>``) from an answer: a complete JSON value is an answer (a
    structured one may well have a ``"name"``), and so is prose that merely contains call-like
    text later on.
    """
    body, ipython, _ = _prelude(text, None)
    if ipython or PYTHON_TAG in body or _BUILTIN_OPENING.match(body):
        return True
    if _CALL_OPENING.match(body) is None:
        return False
    if body.lstrip().startswith("{"):
        try:
            json.loads(body)
        except (ValueError, RecursionError):
            return True
        return False
    return True


# --- streaming --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextChunk:
    """Answer text that is certain to be in the final message's content, in order."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallChunk:
    """A complete tool call, announced once; ``index`` is its position in the final message."""

    index: int
    call: ToolCall


StreamEvent: TypeAlias = TextChunk | ToolCallChunk

_CHEAP_HOLD = 256  # held-back text shorter than this is looked at again on every delta
_SETTLING = re.compile(r"[}\])>\n]")
_JSON_HEAD_DECIDED = re.compile(r'\s*\{\s*"')
_JSON_MARKS = re.compile(r'[\\"{}\[\]]')


class _JsonDepth:
    """Bracket depth of a growing JSON text outside strings, each character read once.

    While a call body is inside its first object, past a head the full check accepted, only
    the bracket that closes it can change the verdict: until then the full check (a failing
    decode and a token scan per delta) is skipped.
    """

    __slots__ = ("closed", "depth", "escaped_at", "in_string", "seen")

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped_at = -1  # position of the character a backslash escapes
        self.closed = False
        self.seen = 0

    def inside(self, text: str) -> bool:
        """Read the new part of ``text``; whether its first object is still open."""
        pos, self.seen = self.seen, len(text)
        for mark in _JSON_MARKS.finditer(text, pos):
            at, char = mark.start(), mark.group()
            if at == self.escaped_at:
                continue
            if self.in_string:
                if char == "\\":
                    self.escaped_at = at + 1
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char != "\\":  # a closing bracket (a backslash outside strings is no JSON)
                self.depth -= 1
                if self.depth <= 0:
                    self.closed = True
                    break
        return not self.closed


def _stable(body: str) -> str:
    """The part of a growing body that no later text can remove from the end.

    Trailing spaces are stripped and a final stop token dropped only once the text has ended,
    so both (and a stop token still arriving, like ``<|eo``) are held back.
    """
    trimmed = body.rstrip(" ")
    for token, _ in _STOP_REASONS:
        if trimmed.endswith(token):
            return trimmed[: -len(token)]
    if len(trimmed) == len(body):
        # a stop token has one "<", at its start: only the last "<" can begin a partial one
        start = body.rfind("<", max(0, len(body) - len(END_OF_TURN) + 1))
        tail = body[start:]
        if start >= 0 and (END_OF_TURN.startswith(tail) or END_OF_MESSAGE.startswith(tail)):
            return body[:start]
    return trimmed


class StreamingToolCallParser:
    """Parse a completion while it streams, fed raw deltas split anywhere.

    :meth:`feed` returns :class:`TextChunk` s as soon as text cannot become part of a call and a
    :class:`ToolCallChunk` for each call once it is certain. Text that may still be call syntax
    (a leading ``{`` or ``[``, ``<``, a word that may become ``name.call(``, a stop token) is held
    back, so call syntax never reaches a text chunk. :meth:`end` returns what was held back;
    the text chunks then concatenate to the content of :meth:`finish`'s message, which is
    :func:`parse_completion` of all the text (the announced calls keep their ``call_id``).
    """

    def __init__(
        self,
        *,
        model: str | ModelSpec | None = None,
        tools: bool = True,
        code_interpreter: bool = True,
    ) -> None:
        self._model = model
        self._tools = tools and _takes_tools(model)
        self._code = code_interpreter
        self._raw = ""
        self._body_start: int | None = None
        self._ipython = False
        self._whole_body_open = True
        self._held_call = False
        self._json: _JsonDepth | None = None
        self._scan_from = 0
        self._checked = 0
        self._content = ""
        self._emitted = 0
        self._calls: list[ToolCall] = []
        self._message: AssistantMessage | None = None

    @property
    def text(self) -> str:
        """All raw text fed so far."""
        return self._raw

    def feed(self, delta: str) -> list[StreamEvent]:
        """Take the next raw delta; return the text and calls it made certain."""
        if self._message is not None:
            raise UserError("StreamingToolCallParser.feed() after end(): start a new parser")
        self._raw += delta
        if not delta or not self._find_body():
            return []
        assert self._body_start is not None
        body = self._raw[self._body_start :]
        stable = _stable(body)
        if not self._tools:
            self._content = stable
            return self._release()
        if not self._due(body, 0 if self._whole_body_open else self._scan_from):
            return []
        if self._held_call:
            return []
        if self._whole_body_open:
            if self._json is not None and self._json.inside(body):
                return []  # still inside the first call object: nothing can be decided
            if _whole_body_calls(stable, final=False) is not None:
                if self._json is None and _JSON_HEAD_DECIDED.match(body):
                    self._json = _JsonDepth()
                return []
            if _WHOLE_CALL_OPENING.match(body):
                # a call the model botched ([f(x=bare)], a JSON call without arguments):
                # held to the end, where the caller may send it back to the model instead
                self._held_call = True
                return []
            self._whole_body_open = False
        return self._scan_more(body, len(stable))

    def end(self, stop_reason: StopReason | None = None) -> list[StreamEvent]:
        """End the stream: the held-back text and the calls not announced yet."""
        if self._message is not None:
            return []
        message = parse_completion(
            self._raw,
            model=self._model,
            stop_reason=stop_reason,
            tools=self._tools,
            code_interpreter=self._code,
        )
        content = message.content if isinstance(message.content, str) else ""
        events: list[StreamEvent] = []
        if len(content) > self._emitted:
            events.append(TextChunk(content[self._emitted :]))
            self._emitted = len(content)
        calls = [*self._calls, *message.tool_calls[len(self._calls) :]]
        events += [ToolCallChunk(i, call) for i, call in enumerate(calls) if i >= len(self._calls)]
        self._calls = calls
        self._message = message.model_copy(update={"tool_calls": calls})
        return events

    def finish(self, stop_reason: StopReason | None = None) -> AssistantMessage:
        """The parsed message; ends the stream first if :meth:`end` was not called."""
        if self._message is None:
            self.end(stop_reason)
        assert self._message is not None
        return self._message

    def _due(self, body: str, held_from: int) -> bool:
        """Whether to look at the held-back text again now.

        Each look costs time in proportion to what is held, so a long held region (a big JSON
        call) is looked at again only when the new text could settle it (a closing bracket,
        ``>``, ``)``, a newline) or it grew by an eighth. Waiting longer only holds text back.
        """
        held = len(body) - held_from
        new = body[self._checked :]
        if held > _CHEAP_HOLD and len(new) * 8 < held and not _SETTLING.search(new):
            return False
        self._checked = len(body)
        return True

    def _find_body(self) -> bool:
        """Settle where the body starts (after spaces, header and python tag) once knowable."""
        if self._body_start is not None:
            return True
        text = self._raw.lstrip(" ")
        start = len(self._raw) - len(text)
        if len(text) < len(_ASSISTANT_HEADER) and _ASSISTANT_HEADER.startswith(text):
            return False
        if text.startswith(_ASSISTANT_HEADER):
            start += len(_ASSISTANT_HEADER)
            text = text[len(_ASSISTANT_HEADER) :]
        if len(text) < len(PYTHON_TAG) and PYTHON_TAG.startswith(text):
            return False
        self._ipython = text.startswith(PYTHON_TAG)
        self._body_start = start + (len(PYTHON_TAG) if self._ipython else 0)
        return True

    def _scan_more(self, body: str, stable: int) -> list[StreamEvent]:
        """Look for calls anywhere in the text not decided yet.

        The scan sees the whole body, so a word followed by a trailing space is known not to
        be ``name.call(``; text past ``stable`` (spaces, a stop token) is not content yet.
        """
        spans, hold = _scan(body, self._scan_from, final=False)
        hold = min(hold, stable)
        events: list[StreamEvent] = []
        pos = self._scan_from
        for span in spans:
            self._content += body[pos : span.start]
            events += self._release()
            events.append(ToolCallChunk(len(self._calls), span.call))
            self._calls.append(span.call)
            pos = span.end
        self._content += body[pos:hold]
        self._scan_from = hold
        return events + self._release()

    def _release(self) -> list[StreamEvent]:
        """Text certain to be content: trailing whitespace waits (content is stripped around
        calls), and after ``<|python_tag|>`` nothing is text unless the final parse says so."""
        if self._ipython:
            return []
        safe = self._content.rstrip()
        if len(safe) <= self._emitted:
            return []
        chunk = TextChunk(safe[self._emitted :])
        self._emitted = len(safe)
        return [chunk]
