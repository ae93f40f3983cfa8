"""Parsing Llama tool calls out of raw completions, whole and streamed (reference §4, §5, §7)."""

from __future__ import annotations

import json
import keyword
from collections.abc import Callable
from itertools import chain, pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentic.errors import UserError
from agentic.llama.models import resolve_model
from agentic.llama.tokens import END_OF_MESSAGE, END_OF_TURN, PYTHON_TAG
from agentic.llama.tool_calls import (
    StreamEvent,
    StreamingToolCallParser,
    TextChunk,
    ToolCallChunk,
    encode_tool_call,
    opens_like_call,
    parse_completion,
)
from agentic.types import AssistantMessage, StopReason, ToolCall, ToolPromptFormat

HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"
Calls = list[tuple[str, dict[str, Any]]]


def calls_of(message: AssistantMessage) -> Calls:
    return [(c.tool_name, c.arguments) for c in message.tool_calls]


def parsed(text: str, **kwargs: Any) -> tuple[str, Calls]:
    message = parse_completion(text, **kwargs)
    assert isinstance(message.content, str)
    return message.content, calls_of(message)


# --- steps 1-4: spaces, header, python tag, stop token ---------------------------------------


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("  Hello \n  ", "Hello \n"),  # only spaces are stripped, never newlines
        ("\nHello\n", "\nHello\n"),
        (f"{HEADER}Hi there<|eot_id|>", "Hi there"),
        (f"  {HEADER}Hi", "Hi"),
        (f"Hi{HEADER}", f"Hi{HEADER}"),  # the header only counts at the start
        ("Hi  <|eot_id|>", "Hi  "),  # spaces are stripped before the stop token is removed
        ("Hi<|eot_id|>  ", "Hi"),
        ("Hi<|eot_id|> more", "Hi<|eot_id|> more"),  # a stop token mid-text is text
    ],
)
def test_prelude_strips_spaces_header_and_trailing_stop_token(text: str, content: str) -> None:
    assert parsed(text) == (content, [])


@pytest.mark.parametrize(
    ("text", "given", "expected"),
    [
        ("Hello<|eot_id|>", None, StopReason.end_of_turn),
        ("Hello<|eom_id|>", None, StopReason.end_of_message),
        ("Hello<|eot_id|>", StopReason.out_of_tokens, StopReason.end_of_turn),
        ("Hello<|eom_id|>", StopReason.end_of_turn, StopReason.end_of_message),
        ("Hello", StopReason.out_of_tokens, StopReason.out_of_tokens),
        ("Hello", StopReason.end_of_message, StopReason.end_of_message),
        ("Hello", None, StopReason.end_of_turn),
    ],
)
def test_stop_reason_comes_from_the_token_else_the_server_else_end_of_turn(
    text: str, given: StopReason | None, expected: StopReason
) -> None:
    message = parse_completion(text, stop_reason=given)
    assert message.stop_reason is expected
    assert message.content == "Hello"


# --- custom calls -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        ('<function=get_weather>{"city": "Paris"}</function><|eot_id|>',
         [("get_weather", {"city": "Paris"})]),
        ('<function=get_weather>{"city": "Paris"}', [("get_weather", {"city": "Paris"})]),
        ("<function=get_weather>{'city': 'Paris'}</function>",
         [("get_weather", {"city": "Paris"})]),
        ('<function=f>{"q": "what\'s new"}</function>', [("f", {"q": "what's new"})]),
        ('<function=f>{"where": {"city": "Paris", "zip": [75001]}}</function>',
         [("f", {"where": {"city": "Paris", "zip": [75001]}})]),
        ('<function=f>{\n  "a": 1,\n  "b": "x"\n}\n</function>', [("f", {"a": 1, "b": "x"})]),
        ('<function=f> {"a": 1} </function>', [("f", {"a": 1})]),
        ('<function=a>{"x": 1}</function>\n<function=b>{}</function>',
         [("a", {"x": 1}), ("b", {})]),
        ('<|python_tag|><function=f>{"a": 1}</function><|eom_id|>', [("f", {"a": 1})]),
    ],
)  # fmt: skip
def test_function_tag_calls(text: str, calls: Calls) -> None:
    assert parsed(text) == ("", calls)


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        ('{"type": "function", "name": "f", "parameters": {"a": 1}}', [("f", {"a": 1})]),
        ('{"name": "f", "parameters": {"a": {"b": [1, {"c": null}]}}}',
         [("f", {"a": {"b": [1, {"c": None}]}})]),
        ('{"name": "f", "arguments": {"a": 1}}', [("f", {"a": 1})]),
        ('{"name": "f", "arguments": "{\\"a\\": 1}"}', [("f", {"a": 1})]),
        ('\n {"name": "f", "parameters": {}} \n', [("f", {})]),
        ('<|python_tag|>{"name": "f", "parameters": {"a": 1}}<|eom_id|>', [("f", {"a": 1})]),
        ('{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 2}}',
         [("a", {}), ("b", {"x": 2})]),
        ('{"name": "a", "parameters": {}}\n{"name": "b", "parameters": {}}',
         [("a", {}), ("b", {})]),
        ('{"name": "f", "parameters": {"q": "<function=g>{}"}}', [("f", {"q": "<function=g>{}"})]),
    ],
)  # fmt: skip
def test_json_calls(text: str, calls: Calls) -> None:
    assert parsed(text) == ("", calls)


def test_json_after_python_tag_is_a_custom_call_not_code() -> None:
    message = parse_completion('<|python_tag|>{"name": "get_time", "parameters": {"tz": "UTC"}}')
    assert calls_of(message) == [("get_time", {"tz": "UTC"})]


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        ('[get_weather(city="Paris", metric="celsius")]',
         [("get_weather", {"city": "Paris", "metric": "celsius"})]),
        ('[a(x=1), b(y="two", z=True, w=None)]',
         [("a", {"x": 1}), ("b", {"y": "two", "z": True, "w": None})]),
        ("[f(x=-1.5, y=-3)]", [("f", {"x": -1.5, "y": -3})]),
        ('[f(d={"k": [1, 2]}, t=(1, 2))]', [("f", {"d": {"k": [1, 2]}, "t": [1, 2]})]),
        ('[f(s=\'it\\\'s\')]', [("f", {"s": "it's"})]),
        ('\n[\n  f(a=1),\n  g(b=2),\n]\n', [("f", {"a": 1}), ("g", {"b": 2})]),
        ("[f()]", [("f", {})]),
        ("<|python_tag|>[f(a=1)]<|eom_id|>", [("f", {"a": 1})]),
    ],
)  # fmt: skip
def test_pythonic_list_calls_keep_every_call(text: str, calls: Calls) -> None:
    assert parsed(text) == ("", calls)


# --- encoding (reference §1) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "fmt", "text"),
    [
        (ToolCall(tool_name="brave_search", arguments={"query": 'say "hi"'}), ToolPromptFormat.json,
         'brave_search.call(query="say "hi"")'),
        (ToolCall(tool_name="code_interpreter", arguments={"code": "print(1)"}),
         ToolPromptFormat.python_list, "print(1)"),
        (ToolCall(tool_name="f", arguments={"city": "Zürich"}), ToolPromptFormat.json,
         '{"type": "function", "name": "f", "parameters": {"city": "Z\\u00fcrich"}}'),
        (ToolCall(tool_name="f", arguments={"a": 1}), ToolPromptFormat.function_tag,
         '<function=f>{"a": 1}</function>'),
        (ToolCall(tool_name="f", arguments={"s": "x", "b": True, "n": None, "l": [1, "y"],
                                            "d": {"k": "v"}}),
         ToolPromptFormat.python_list, '[f(s="x", b=True, n=None, l=[1, "y"], d={k="v"})]'),
    ],
)  # fmt: skip
def test_encode_tool_call_matches_the_reference_table(
    call: ToolCall, fmt: ToolPromptFormat, text: str
) -> None:
    assert encode_tool_call(call, fmt) == text


# --- built-in calls and code ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        ('<|python_tag|>brave_search.call(query="Menlo Park weather")<|eom_id|>',
         [("brave_search", {"query": "Menlo Park weather"})]),
        ('wolfram_alpha.call(query="solve x^2=4")', [("wolfram_alpha", {"query": "solve x^2=4"})]),
        ('<|python_tag|>client.call(query="x")', [("client", {"query": "x"})]),  # any name
        ('code_interpreter.call(query="print(1)")', [("code_interpreter", {"code": "print(1)"})]),
        ("<|python_tag|>import math\nprint(math.pi)<|eom_id|>",
         [("code_interpreter", {"code": "import math\nprint(math.pi)"})]),
        ("<|python_tag|>The answer is 42.", [("code_interpreter", {"code": "The answer is 42."})]),
        ("<|python_tag|><|eom_id|>", [("code_interpreter", {"code": ""})]),
    ],
)  # fmt: skip
def test_builtin_calls_and_code(text: str, calls: Calls) -> None:
    assert parsed(text) == ("", calls)


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        ('{"name": "brave_search", "parameters": {"query": "x"}}',
         [("brave_search", {"query": "x"})]),
        ('[brave_search(q="x")]', [("brave_search", {"query": "x"})]),
        ('<function=wolfram_alpha>{"n": 5, "query": "pi"}</function>',
         [("wolfram_alpha", {"query": "pi"})]),
        # the reference would give {"query": ...}; the code interpreter takes "code"
        ('{"name": "code_interpreter", "parameters": {"code": "print(1)"}}',
         [("code_interpreter", {"code": "print(1)"})]),
        ('[code_interpreter(src="1+1")]', [("code_interpreter", {"code": "1+1"})]),
    ],
)  # fmt: skip
def test_custom_call_to_a_builtin_name_becomes_that_builtin(text: str, calls: Calls) -> None:
    assert parsed(text) == ("", calls)


def test_text_around_calls_found_anywhere_is_the_content() -> None:
    text = 'Let me look that up.\n<|python_tag|>brave_search.call(query="x")<|eom_id|>'
    assert parsed(text) == ("Let me look that up.", [("brave_search", {"query": "x"})])
    text = 'Sure. <function=f>{"a": 1}</function>\nDone.'
    assert parsed(text) == ("Sure. \nDone.", [("f", {"a": 1})])


def test_each_call_gets_a_fresh_call_id() -> None:
    first = parse_completion("[a(x=1), b(y=2)]").tool_calls
    second = parse_completion("[a(x=1), b(y=2)]").tool_calls
    ids = {c.call_id for c in first + second}
    assert len(ids) == 4


# --- agreement with Meta's reference parser (llama_models, used only as an oracle) ----------


@pytest.fixture(scope="module")
def reference() -> Callable[[str], tuple[str, Calls, StopReason]]:
    from llama_models.datatypes import StopReason as RefStopReason
    from llama_models.llama3.chat_format import ChatFormat
    from llama_models.llama3.tokenizer import Tokenizer

    chat_format = ChatFormat(Tokenizer.get_instance())

    def run(text: str) -> tuple[str, Calls, StopReason]:
        raw = chat_format.decode_assistant_message_from_content(text, RefStopReason.end_of_turn)
        calls = [(getattr(c.tool_name, "value", c.tool_name), c.arguments) for c in raw.tool_calls]
        return raw.content, calls, StopReason(raw.stop_reason.value)

    return run


@pytest.mark.parametrize(
    "text",
    [
        "Hello", "  Hello \n  ", f"{HEADER}Hi<|eot_id|>", "Hi<|eom_id|>", "Hi<|eot_id|> more",
        '<function=get_weather>{"city": "Paris"}</function><|eot_id|>',
        "<function=get_weather>{'city': 'Paris'}",
        '{"type": "function", "name": "f", "parameters": {"a": 1}}',
        '<|python_tag|>{"name": "f", "parameters": {"a": "x"}}<|eom_id|>',
        '[get_weather(city="Paris", metric="celsius")]', "[f(x=-1.5, y=True)]",
        '<|python_tag|>brave_search.call(query="Menlo Park weather")<|eom_id|>',
        '<|python_tag|>client.call(query="x")',
        "<|python_tag|>import math\nprint(math.pi)<|eom_id|>",
        '{"name": "brave_search", "parameters": {"query": "x"}}', "[wolfram_alpha(query='pi')]",
        '{"name": "f", "parameters": {"a": 1}', 'Here: {"name": "f", "parameters": {}}',
        '[{"name": "f", "parameters": {}}]', '{"a": 1}', "[]", "[f(1)]", "[a.b(x=1)]",
        "[f(a=1), 2]", "Calling [f(a=1)]", "[f(a=1)] done", "f(a=1)", '<function=f>{"a": }',
        "brave_search.call(query='x')",
    ],
)  # fmt: skip
def test_agrees_with_the_reference_parser(
    text: str, reference: Callable[[str], tuple[str, Calls, StopReason]]
) -> None:
    message = parse_completion(text)
    assert (message.content, calls_of(message), message.stop_reason) == reference(text)


# --- malformed output is text --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "f", "parameters": {"a": 1}',  # truncated JSON
        'Here you go: {"name": "f", "parameters": {}}',  # text before JSON
        '{"name": "f", "parameters": {}} hope that helps',  # text after JSON
        '[{"name": "f", "parameters": {}}]',  # JSON array
        '{"type": "other", "parameters": {}}',  # dict without name
        '{"a": 1}',
        '{"type": "function", "parameters": {"a": 1}}',
        '{"name": "f"}',  # name but no parameters (the reference raises)
        '{"name": "f", "parameters": [1]}',
        '{"name": "f", "parameters": "not json"}',
        '{"name": 3, "parameters": {}}',
        '{"name": "f", "parameters": {}};',  # a trailing separator
        '{"name": "f", "parameters": {}}; {"a": 1}',
        "[]",
        "[f(1)]",  # positional argument
        "[f(**kw)]",
        "[a.b(x=1)]",  # dotted name
        "[f(a=1), 2]",  # non-call element
        "Calling [f(a=1)]",  # text before a list
        "[f(a=1)] done",  # text after a list
        "[f(a=1)] # note",
        "[f(a=1)][g(b=2)] done",  # text after lists
        "[f(a=1)]; [g(b=2)]",
        "f(a=1)",  # bare call
        "[f(a=b)]",  # bare name value (the reference raises)
        "[f(a=g(x=1))]",
        "[f(a={1, 2})]",
        "[f(a=1e999)]",
        "[f(a=b'x')]",
        '{"name": "f", "parameters": {"a": NaN}}',
        "<function=f>{'a': 'it's'}</function>",  # invalid both as JSON and leniently
        '<function=f>{"a": }</function>',
        "<function=f>not json</function>",
        "<function=f>{\n'a': 1}",
        "<function=>{}</function>",
        '{"name": "brave_search", "parameters": {}}',  # a builtin without its argument
        "brave_search.call(query='x')",  # only a double-quoted query counts
    ],
)
def test_malformed_output_is_plain_text(text: str) -> None:
    assert parsed(text) == (text, [])


# --- which models take tools ------------------------------------------------------------------


def test_models_without_tools_never_call() -> None:
    text = '<|python_tag|>brave_search.call(query="x")<|eom_id|>'
    assert parsed(text, model="meta-llama/Llama-3.1-8B") == ('brave_search.call(query="x")', [])
    assert parsed("unsafe\nS1", model="Llama-Guard-3-8B") == ("unsafe\nS1", [])
    assert parsed("[f(a=1)]", model=resolve_model("meta-llama/Llama-3.2-1B")) == ("[f(a=1)]", [])


@pytest.mark.parametrize(
    "model", ["meta-llama/Llama-3.1-8B-Instruct", "Llama3.2-3B-Instruct", "my-own-finetune", None]
)
def test_instruct_and_unknown_models_parse_calls(model: str | None) -> None:
    assert parsed("[f(a=1)]", model=model) == ("", [("f", {"a": 1})])


# --- streaming ------------------------------------------------------------------------------


def stream(
    pieces: list[str], stop: StopReason | None = None, model: str | None = None
) -> tuple[list[list[StreamEvent]], list[StreamEvent], AssistantMessage]:
    parser = StreamingToolCallParser(model=model)
    per_feed = [parser.feed(piece) for piece in pieces]
    last = parser.end(stop)
    return per_feed, last, parser.finish()


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextChunk))


def test_plain_text_streams_before_the_end() -> None:
    per_feed, last, message = stream(["Hel", "lo wor", "ld, how ", "are you?", "\n", "<|eot_id|>"])
    assert [text_of(e) for e in per_feed] == ["", "Hello", " world, how", " are you?", "", ""]
    assert text_of(last) == "\n"  # trailing whitespace waits for the end
    assert message.content == "Hello world, how are you?\n"
    assert message.stop_reason is StopReason.end_of_turn


def test_special_tokens_split_across_deltas_never_reach_text() -> None:
    pieces = [
        "Let me check.",
        "<|py",
        "thon_",
        "tag|>brave",
        "_search.call(query=",
        '"x")',
        "<|eo",
        "m_id|>",
    ]
    per_feed, last, message = stream(pieces)
    texts = [text_of(events) for events in per_feed] + [text_of(last)]
    assert "".join(texts) == "Let me check."
    calls = [e for events in per_feed for e in events if isinstance(e, ToolCallChunk)]
    assert [(c.index, c.call.tool_name, c.call.arguments) for c in calls] == [
        (0, "brave_search", {"query": "x"})
    ]
    assert any(isinstance(e, ToolCallChunk) for e in per_feed[5])  # announced at its ")"
    assert message.tool_calls == [calls[0].call]
    assert message.stop_reason is StopReason.end_of_message


def test_a_leading_assistant_header_never_reaches_text() -> None:
    per_feed, last, message = stream(
        ["  <|start_header_id|>assis", "tant<|end_header_id|>\n", "\nHi there", "<|eot_id|>"]
    )
    assert [text_of(e) for e in per_feed] == ["", "", "Hi", " there"]
    assert last == []
    assert message.content == "Hi there"


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "f", "parameters": {"a": 1}}<|eot_id|>',
        "[f(a=1), g(b='x')]<|eot_id|>",
        '<|python_tag|>{"name": "f", "parameters": {}}<|eom_id|>',
        "<|python_tag|>print('hi')<|eom_id|>",
    ],
)
def test_whole_body_calls_and_code_stream_no_text(text: str) -> None:
    per_feed, last, message = stream(list(text))
    assert text_of([e for events in per_feed for e in events] + last) == ""
    assert message.content == ""
    assert len(message.tool_calls) >= 1


def test_closed_json_that_is_not_a_call_is_released_before_the_end() -> None:
    per_feed, _, _ = stream(['{"a": tru}', " is not JSON", "."])
    assert text_of(per_feed[0]) == '{"a": tru}'  # closed and refused by the decoder


def test_json_that_is_no_call_is_released_once_closed_whatever_its_strings_hold() -> None:
    obj = json.dumps({"q": 'a } b ] c \\" { [ \\', "n": [{"x": "}"}]})
    per_feed, _, message = stream([*obj, " is", " the", " data", ".", "<|eot_id|>"])
    closed = len(obj) - 1
    assert not any(per_feed[:closed])  # held while the object is open
    assert text_of([e for events in per_feed[: closed + 3] for e in events]).startswith(obj)
    assert message.content == obj + " is the data."


def test_text_that_only_starts_like_a_call_is_released_early() -> None:
    per_feed, _, _ = stream(["[Note", "] this ", "is text"])
    assert text_of(per_feed[1]) == "[Note] this"
    per_feed, _, _ = stream(["{Hello", " there"])
    assert text_of(per_feed[0]) == "{"  # not JSON; "Hello" could still become "Hello.call("
    assert text_of(per_feed[1]) == "Hello"


def test_function_tag_call_is_announced_when_complete() -> None:
    per_feed, last, message = stream(
        ["Sure ", "<function=f>", '{"a": {"b"', ": 1}}", "</function>", "<|eot_id|>"]
    )
    assert text_of(per_feed[0]) == "Sure"
    announced = [e for e in per_feed[4] if isinstance(e, ToolCallChunk)]
    assert [(c.call.tool_name, c.call.arguments) for c in announced] == [("f", {"a": {"b": 1}})]
    assert last == []
    assert message.content == "Sure"


def test_announced_calls_keep_their_ids_in_the_final_message() -> None:
    per_feed, last, message = stream(['<function=a>{"x": 1}</function>', "\n", "<function=b>{}"])
    chunks = [e for e in [*chain(*per_feed), *last] if isinstance(e, ToolCallChunk)]
    assert [c.index for c in chunks] == [0, 1]
    assert [c.call for c in chunks] == message.tool_calls


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(
            {"name": "f", "parameters": {"rows": [{"n": i, "s": "x" * 9} for i in range(60)]}}
        ),
        json.dumps({"rows": [{"n": i} for i in range(120)]}) + " is the data I found.",
        "Sure. <function=f>" + json.dumps({"text": "lorem ipsum " * 100}) + "</function>",
        '[f(text="' + "lorem ipsum " * 100 + '")]',
    ],
)
def test_long_held_back_regions_stream_char_by_char(text: str) -> None:
    events, message = check_stream_matches_parse(list(text + "<|eot_id|>"), None)
    if message.tool_calls:
        assert text_of(events) == message.content
        assert "{" not in text_of(events)


def test_finish_without_end_and_feed_after_end() -> None:
    parser = StreamingToolCallParser()
    parser.feed("Hi")
    assert parser.finish(StopReason.out_of_tokens).stop_reason is StopReason.out_of_tokens
    assert parser.end() == []
    assert parser.text == "Hi"
    with pytest.raises(UserError, match="after end"):
        parser.feed("more")


def test_streaming_for_a_model_without_tools_is_plain_text() -> None:
    per_feed, last, message = stream(["[f(a=1)] ", "and more\n"], model="meta-llama/Llama-3.1-8B")
    assert text_of(per_feed[0]) == "[f(a=1)]"
    assert text_of(per_feed[1] + last) == " and more\n"
    assert message.tool_calls == []


def test_stream_ending_inside_a_call_falls_back_to_text() -> None:
    per_feed, last, message = stream(
        ['{"name": "f", "parameters": {"a": '], StopReason.out_of_tokens
    )
    assert text_of(per_feed[0]) == ""
    assert text_of(last) == '{"name": "f", "parameters": {"a":'  # spaces stripped at the end
    assert message.stop_reason is StopReason.out_of_tokens


# --- properties ------------------------------------------------------------------------------

FRAGMENTS = [
    PYTHON_TAG, END_OF_TURN, END_OF_MESSAGE, HEADER, "<|start_header_id|>", "<|", "|>",
    "<function=", "<function=f>", "</function>", "<function=brave_search>",
    '{"name": "f", "parameters": {"a": 1}}', '{"name": "g"', '"parameters": {', "}", "{",
    "{'a': 1}",
    "[f(a=1)]", '[f(a=1), g(b="x")]', "[", "]", "(", ")", "f(", "a=", "1", "-2.5", "True",
    'brave_search.call(query="x")', 'x.call(query="', ".call(", '")', "code_interpreter",
    '"', "'", ";", ",", ".", "=", " ", "  ", "\n", "\t", "Hello", "world", "x", "_",
]  # fmt: skip
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=14).map(
    "".join
)
stops = st.sampled_from([None, *StopReason])


def split(text: str, data: st.DataObject) -> list[str]:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=8).map(sorted))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in pairwise(bounds)]


@given(texts, stops, st.sampled_from([None, "meta-llama/Llama-3.1-8B", "unknown/model"]))
@settings(max_examples=400)
def test_parse_completion_never_raises(
    text: str, stop: StopReason | None, model: str | None
) -> None:
    message = parse_completion(text, model=model, stop_reason=stop)
    assert message.stop_reason is not None
    if message.tool_calls:
        json.dumps([c.arguments for c in message.tool_calls], allow_nan=False)


@given(st.text(), stops)
def test_parse_completion_never_raises_on_any_text(text: str, stop: StopReason | None) -> None:
    parse_completion(text, stop_reason=stop)


def check_stream_matches_parse(
    pieces: list[str], stop: StopReason | None
) -> tuple[list[StreamEvent], AssistantMessage]:
    """Streamed text and calls equal the parse of the whole text; returns events and message."""
    per_feed, last, message = stream(pieces, stop)
    events = [*chain(*per_feed), *last]
    expected = parse_completion("".join(pieces), stop_reason=stop)
    assert text_of(events) == expected.content
    chunks = [e for e in events if isinstance(e, ToolCallChunk)]
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.call for c in chunks] == message.tool_calls
    assert calls_of(message) == calls_of(expected)
    assert (message.content, message.stop_reason) == (expected.content, expected.stop_reason)
    return events, message


@given(texts, stops, st.data())
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
def test_streaming_equals_parse_for_any_split(
    text: str, stop: StopReason | None, data: st.DataObject
) -> None:
    check_stream_matches_parse(split(text, data), stop)


# --- round trips: how the model writes a call parses back to it ----------------------------

names = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: (
        not keyword.iskeyword(n)
        and n not in {"brave_search", "wolfram_alpha", "photogen", "code_interpreter"}
    )
)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
json_args = st.dictionaries(st.text(), json_values, max_size=4)
# The pythonic encoder writes strings raw in double quotes and dicts as {k=v}, which is not
# Python: strings can hold no '"', no backslash and no control characters, and no dicts.
py_strings = st.text(st.characters(exclude_categories=("Cs", "Cc"), exclude_characters='"\\'))
py_scalars = st.none() | st.booleans() | st.integers() | finite | py_strings
py_values = py_scalars | st.lists(py_scalars, max_size=3)
py_args = st.dictionaries(names, py_values, max_size=4)
queries = st.text(st.characters(exclude_categories=["Cs"], exclude_characters='"'))


@st.composite
def emissions(draw: st.DrawFn) -> tuple[str, list[ToolCall], StopReason]:
    """A completion as a Llama model writes it, and the calls in it."""
    fmt = draw(st.sampled_from(["json", "function_tag", "python_list", "builtin", "code"]))
    if fmt == "json":
        call = ToolCall(tool_name=draw(names), arguments=draw(json_args))
        tagged = draw(st.booleans())  # 3.1 with Environment: ipython prefixes the tag
        body = encode_tool_call(call, ToolPromptFormat.json)
        if tagged:
            return PYTHON_TAG + body + END_OF_MESSAGE, [call], StopReason.end_of_message
        return body + END_OF_TURN, [call], StopReason.end_of_turn
    if fmt == "function_tag":
        calls = [
            ToolCall(tool_name=draw(names), arguments=draw(json_args))
            for _ in range(draw(st.integers(1, 2)))
        ]
        body = "".join(encode_tool_call(c, ToolPromptFormat.function_tag) for c in calls)
        return body + END_OF_TURN, calls, StopReason.end_of_turn
    if fmt == "python_list":
        calls = [
            ToolCall(tool_name=draw(names), arguments=draw(py_args))
            for _ in range(draw(st.integers(1, 3)))
        ]
        inner = [encode_tool_call(c, ToolPromptFormat.python_list)[1:-1] for c in calls]
        return "[" + ", ".join(inner) + "]" + END_OF_TURN, calls, StopReason.end_of_turn
    if fmt == "builtin":
        tool = draw(st.sampled_from(["brave_search", "wolfram_alpha", "photogen"]))
        call = ToolCall(tool_name=tool, arguments={"query": draw(queries)})
        text = PYTHON_TAG + encode_tool_call(call, ToolPromptFormat.json) + END_OF_MESSAGE
        return text, [call], StopReason.end_of_message
    code = draw(st.text(st.sampled_from("abcxyz_019 =+-*/()[]{}:#'\"\n\t.,")))
    # Code that is itself a whole JSON call or list of calls, or quotes call syntax, parses as
    # those calls; this generator cannot produce the latter, and assume() drops the former.
    assume(not code.strip(" \t\n").startswith(("[", "{")))
    call = ToolCall(tool_name="code_interpreter", arguments={"code": code})
    return PYTHON_TAG + code + END_OF_MESSAGE, [call], StopReason.end_of_message


@given(emissions())
@settings(max_examples=250)
def test_encoded_calls_parse_back(emission: tuple[str, list[ToolCall], StopReason]) -> None:
    text, calls, stop = emission
    message = parse_completion(text)
    assert calls_of(message) == [(c.tool_name, c.arguments) for c in calls]
    assert message.content == ""
    assert message.stop_reason is stop


@given(emissions(), st.sampled_from(["", "Sure, one moment.\n", "Let me check. "]), st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_streamed_calls_never_leak_syntax_into_text(
    emission: tuple[str, list[ToolCall], StopReason], preamble: str, data: st.DataObject
) -> None:
    text, calls, _ = emission
    anywhere = text.startswith((PYTHON_TAG + "brave", PYTHON_TAG + "wolf", PYTHON_TAG + "photo"))
    anywhere = anywhere or text.startswith("<function=")
    full = (preamble + text) if anywhere else text  # whole-body formats take no preamble
    events, message = check_stream_matches_parse(split(full, data), None)
    for chunk in events:
        if isinstance(chunk, TextChunk):
            assert not any(s in chunk.text for s in ("<|", "<function", ".call(", "[", "{"))
    assert calls_of(message) == [(c.tool_name, c.arguments) for c in calls]
    assert message.content == (preamble.rstrip() if anywhere else "")


@pytest.mark.parametrize(
    ("text", "opens"),
    [
        ('[get_weather(city="Paris"]<|eot_id|>', True),
        ("  [ get_weather (", True),
        ('{"name": "f", "parameters": {"x": 1}', True),  # cut short
        ('{"type": "function", "name": "f"', True),
        ('<function=f>{"x": ', True),
        ('brave_search.call(query="x"', True),
        ("<|python_tag|>print(", True),
        ('{"name": "Paris", "weather": "sunny"}', False),  # a complete JSON answer
        ("[1] Paris is sunny.", False),
        ("[Paris](https://example.com) is sunny.", False),
        ('Try [get_weather(city="Paris")] yourself.', False),
        ("Sunny.", False),
        ("", False),
    ],
)
def test_opens_like_call(text: str, opens: bool) -> None:
    assert opens_like_call(text) is opens


def test_code_after_the_python_tag_is_text_without_the_code_interpreter() -> None:
    raw = f'{PYTHON_TAG}{{"name": "f", "parameters": {{"x": 1}}{END_OF_MESSAGE}'
    assert parse_completion(raw).tool_calls[0].tool_name == "code_interpreter"
    message = parse_completion(raw, code_interpreter=False)
    assert message.tool_calls == []
    assert message.content == '{"name": "f", "parameters": {"x": 1}'
    assert message.stop_reason is StopReason.end_of_message
    parser = StreamingToolCallParser(code_interpreter=False)
    events = [*parser.feed(raw), *parser.end()]
    assert not any(isinstance(e, ToolCallChunk) for e in events)
    assert parser.finish() == message
    good = f'{PYTHON_TAG}brave_search.call(query="x"){END_OF_MESSAGE}'
    assert parse_completion(good, code_interpreter=False).tool_calls[0].tool_name == "brave_search"


@pytest.mark.parametrize("gap", ["", " ", "\n"])
def test_lists_in_a_row_are_calls_as_the_history_writes_them(gap: str) -> None:
    calls = [
        ToolCall(tool_name="f", arguments={"a": 1}),
        ToolCall(tool_name="g", arguments={"b": "]"}),
    ]
    text = gap.join(encode_tool_call(c, ToolPromptFormat.python_list) for c in calls)
    assert text.replace(gap, "") == '[f(a=1)][g(b="]")]'
    message = parse_completion(text + END_OF_TURN, model="meta-llama/Llama-3.2-3B-Instruct")
    assert [(c.tool_name, c.arguments) for c in message.tool_calls] == [
        ("f", {"a": 1}),
        ("g", {"b": "]"}),
    ]
    parser = StreamingToolCallParser(model="meta-llama/Llama-3.2-3B-Instruct")
    events = [e for ch in text + END_OF_TURN for e in parser.feed(ch)] + parser.end()
    assert [e.call.tool_name for e in events if isinstance(e, ToolCallChunk)] == ["f", "g"]
    assert not any(isinstance(e, TextChunk) for e in events)


@pytest.mark.parametrize(
    ("after", "name"),
    [
        ('{"name": "lookup", "parameters": {"city": "Paris"}}', "lookup"),
        ('[lookup(city="Paris")]', "lookup"),
        ('brave_search.call(query="Paris")', "brave_search"),
        ("print(1)", "code_interpreter"),
    ],
)
def test_text_before_the_python_tag_is_content_and_the_call_follows(after: str, name: str) -> None:
    raw = f"Let me check. {PYTHON_TAG}{after}{END_OF_MESSAGE}"
    message = parse_completion(raw)
    assert message.content == "Let me check."
    assert [c.tool_name for c in message.tool_calls] == [name]
    parser = StreamingToolCallParser()
    events = [e for ch in raw for e in parser.feed(ch)] + parser.end()
    assert "".join(e.text for e in events if isinstance(e, TextChunk)) == "Let me check."
    assert [e.call.tool_name for e in events if isinstance(e, ToolCallChunk)] == [name]


def test_a_broken_call_after_the_python_tag_stays_content_without_the_interpreter() -> None:
    raw = f'Hmm {PYTHON_TAG}{{"name": "f", {END_OF_MESSAGE}'
    message = parse_completion(raw, code_interpreter=False)
    assert message.tool_calls == []
    assert message.content == f'Hmm {PYTHON_TAG}{{"name": "f", '  # the caller sends it back
    assert opens_like_call(raw)
