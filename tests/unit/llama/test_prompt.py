"""Prompt rendering, byte for byte: Meta's ChatFormat as an oracle, the reference doc's examples."""

from __future__ import annotations

import datetime as dt
import functools
import io
import random
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from helpers import TRENDING, schema_tool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_models.datatypes import RawMediaItem, RawMessage, RawTextItem
from llama_models.datatypes import StopReason as RefStopReason
from llama_models.datatypes import ToolCall as RefToolCall
from llama_models.datatypes import ToolPromptFormat as RefToolPromptFormat
from llama_models.llama3.chat_format import ChatFormat
from llama_models.llama3.tokenizer import Tokenizer
from PIL import Image

from agentic.errors import ConfigError, UnknownModelError, UnsupportedFeatureError
from agentic.llama import prompt as prompt_module
from agentic.llama import system_prompts as sp
from agentic.llama.prompt import (
    MessageLike,
    PromptCache,
    assemble_messages,
    format_base,
    format_dialog,
    format_message,
    render_prompt,
)
from agentic.llama.tokens import IMAGE, SPECIAL_TOKEN_IDS, VISION_IMAGE_ID
from agentic.types import (
    AssistantMessage,
    ContentPart,
    ImageContent,
    Message,
    StopReason,
    SystemMessage,
    TextContent,
    ToolCall,
    ToolDefinition,
    ToolMessage,
    ToolPromptFormat,
    UserMessage,
)

TODAY = dt.date(2024, 9, 21)
BOT = "<|begin_of_text|>"
GEN = "<|start_header_id|>assistant<|end_header_id|>\n\n"
L31 = "Llama3.1-8B-Instruct"
L32 = "Llama3.2-1B-Instruct"
L33 = "Llama3.3-70B-Instruct"
VISION = "Llama3.2-11B-Vision-Instruct"
DATE = "Cutting Knowledge Date: December 2023\nToday Date: 21 September 2024"


def msg(role: str, body: str, end: str = "<|eot_id|>") -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{body}{end}"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (255, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


IMG = ImageContent.from_bytes(_png())


WEATHER = schema_tool(
    "get_weather",
    "Get weather info for places",
    {"city": {"type": "string", "description": "The name of the city to get the weather for"}},
    ["city"],
)
BRAVE = ToolDefinition.builtin("brave_search")
WOLFRAM = ToolDefinition.builtin("wolfram_alpha")
CODE = ToolDefinition.builtin("code_interpreter")


# --- the reference oracle ----------------------------------------------------------------------


@functools.cache
def _chat_format() -> Any:
    return ChatFormat(Tokenizer.get_instance())


def _raw_content(content: str | list[ContentPart]) -> Any:
    if isinstance(content, str):
        return content
    return [
        RawTextItem(text=p.text) if isinstance(p, TextContent) else RawMediaItem(data=p.data())
        for p in content
    ]


def _raw_message(m: Message) -> Any:
    fields: dict[str, Any] = {"role": m.role, "content": _raw_content(m.content)}
    if isinstance(m, UserMessage):
        fields["context"] = m.context
    if isinstance(m, AssistantMessage):
        if m.stop_reason is not None:
            fields["stop_reason"] = RefStopReason(m.stop_reason.value)
        fields["tool_calls"] = [
            RefToolCall(call_id=c.call_id, tool_name=c.tool_name, arguments=c.arguments)
            for c in m.tool_calls
        ]
    return RawMessage(**fields)


def reference_dialog(messages: Sequence[Message], fmt: ToolPromptFormat) -> str:
    """Meta's ChatFormat tokens for ``messages``, decoded back to text."""
    chat = _chat_format()
    tokens = chat.encode_dialog_prompt(
        [_raw_message(m) for m in messages], RefToolPromptFormat(fmt.value)
    ).tokens
    image_id = SPECIAL_TOKEN_IDS[IMAGE]
    text: str = chat.tokenizer.decode([image_id if t == VISION_IMAGE_ID else t for t in tokens])
    return text


# --- hypothesis strategies ---------------------------------------------------------------------

_text = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=24),
    st.sampled_from(["", " ", "\n\n", "  padded  \n", "<|eot_id|>", "ü ß 漢字", '"quoted"']),
)
_primitive = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    _text,
)
_arguments = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True),
    st.one_of(
        _primitive,
        st.lists(_primitive, max_size=3),
        st.dictionaries(st.from_regex(r"[a-z]{1,4}", fullmatch=True), _primitive, max_size=2),
    ),
    max_size=3,
)
_custom_name = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: n not in {"brave_search", "wolfram_alpha", "photogen", "code_interpreter"}
)
_tool_call = st.one_of(
    st.builds(
        lambda n, q: ToolCall(tool_name=n, arguments={"query": q}),
        st.sampled_from(["brave_search", "wolfram_alpha", "photogen"]),
        _text,
    ),
    st.builds(lambda c: ToolCall(tool_name="code_interpreter", arguments={"code": c}), _text),
    st.builds(lambda n, a: ToolCall(tool_name=n, arguments=a), _custom_name, _arguments),
)
_text_part = st.builds(TextContent, text=_text)
_parts: st.SearchStrategy[list[ContentPart]] = st.lists(
    st.one_of(_text_part, st.just(IMG)), max_size=4
)
_user = st.builds(
    UserMessage, content=st.one_of(_text, _parts), context=st.one_of(st.none(), _text)
)
_system = st.builds(SystemMessage, content=st.one_of(_text, st.lists(_text_part, max_size=3)))
_assistant = st.builds(
    AssistantMessage,
    content=_text,
    tool_calls=st.lists(_tool_call, max_size=3),
    stop_reason=st.one_of(st.none(), st.sampled_from(list(StopReason))),
)
_tool_result = st.builds(ToolMessage, call_id=st.just("c1"), content=_text)
_dialog = st.lists(st.one_of(_system, _user, _assistant, _tool_result), max_size=6)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=_dialog, fmt=st.sampled_from(list(ToolPromptFormat)))
def test_format_dialog_matches_meta_chat_format(
    messages: list[Message], fmt: ToolPromptFormat
) -> None:
    assert format_dialog(messages, tool_prompt_format=fmt) == reference_dialog(messages, fmt)


HAND_WRITTEN: list[tuple[list[Message], ToolPromptFormat]] = [
    ([], ToolPromptFormat.json),
    (
        [
            SystemMessage(content="You are a helpful assistant."),
            UserMessage(content=[IMG, IMG, TextContent(text="What do these images depict?")]),
        ],
        ToolPromptFormat.json,
    ),
    (
        [
            UserMessage(content="Weather in Menlo Park?"),
            AssistantMessage(
                tool_calls=[ToolCall(tool_name="brave_search", arguments={"query": "Menlo Park"})],
                stop_reason=StopReason.end_of_message,
            ),
            ToolMessage(call_id="x", content='"25 C"'),
            AssistantMessage(content="It is 25 C.", stop_reason=StopReason.end_of_turn),
        ],
        ToolPromptFormat.json,
    ),
    (
        [
            UserMessage(content="plot"),
            AssistantMessage(
                content="Sure: ",
                tool_calls=[
                    ToolCall(tool_name="code_interpreter", arguments={"code": "print(1)"}),
                    ToolCall(tool_name="f", arguments={"x": {"k": "v"}, "y": [1, None]}),
                ],
                stop_reason=StopReason.end_of_message,
            ),
        ],
        ToolPromptFormat.python_list,
    ),
    (
        [
            UserMessage(content="q", context="DOC 1\n\nDOC 2"),
            AssistantMessage(
                tool_calls=[ToolCall(tool_name="get_weather", arguments={"city": "Zürich"})],
            ),
        ],
        ToolPromptFormat.function_tag,
    ),
]


@pytest.mark.parametrize(("messages", "fmt"), HAND_WRITTEN)
def test_hand_written_dialogs_match_meta_chat_format(
    messages: list[Message], fmt: ToolPromptFormat
) -> None:
    assert format_dialog(messages, tool_prompt_format=fmt) == reference_dialog(messages, fmt)


# --- chat format examples ----------------------------------------------------------------------


def test_images_are_placed_where_they_are_and_text_parts_join_without_separator() -> None:
    user = UserMessage(content=[IMG, IMG, TextContent(text="What do these images depict?")])
    assert format_dialog([user], add_generation_prompt=False) == BOT + msg(
        "user", "<|image|><|image|>What do these images depict?"
    )
    mixed = UserMessage(
        content=[TextContent(text="A "), IMG, TextContent(text=" B"), TextContent(text="C")]
    )
    assert format_message(mixed) == msg("user", "A <|image|> BC")


def test_bodies_are_verbatim_and_rag_context_follows_a_blank_line() -> None:
    text = format_dialog(
        [{"role": "user", "content": "  hi \n", "context": "retrieved"}],
        add_generation_prompt=False,
    )
    assert text == BOT + msg("user", "  hi \n\n\nretrieved")


def test_end_token_depends_only_on_assistant_stop_reason() -> None:
    eom = AssistantMessage(content="a", stop_reason=StopReason.end_of_message)
    eot = AssistantMessage(content="a", stop_reason=StopReason.end_of_turn)
    out = AssistantMessage(content="a", stop_reason=StopReason.out_of_tokens)
    assert format_message(eom) == msg("assistant", "a", "<|eom_id|>")
    assert format_message(eot) == msg("assistant", "a")
    assert format_message(out) == msg("assistant", "a")
    assert format_message(AssistantMessage(content="a")) == msg("assistant", "a")


def test_python_tag_only_before_code_interpreter_history() -> None:
    code = AssistantMessage(
        tool_calls=[ToolCall(tool_name="code_interpreter", arguments={"code": "print(2+2)"})],
        stop_reason=StopReason.end_of_message,
    )
    search = AssistantMessage(
        tool_calls=[ToolCall(tool_name="brave_search", arguments={"query": "x"})],
        stop_reason=StopReason.end_of_message,
    )
    custom = AssistantMessage(tool_calls=[ToolCall(tool_name="f", arguments={"a": 1})])
    assert format_message(code) == msg("assistant", "<|python_tag|>print(2+2)", "<|eom_id|>")
    assert format_message(search) == msg("assistant", 'brave_search.call(query="x")', "<|eom_id|>")
    assert format_message(custom) == msg(
        "assistant", '{"type": "function", "name": "f", "parameters": {"a": 1}}'
    )


def test_tool_results_use_the_ipython_role() -> None:
    assert format_message({"role": "tool", "tool_call_id": "1", "content": '"25 C"'}) == msg(
        "ipython", '"25 C"'
    )


def test_two_python_list_calls_are_two_lists() -> None:
    calls = [
        ToolCall(tool_name="a", arguments={"x": 1}),
        ToolCall(tool_name="b", arguments={"y": 2}),
    ]
    text = format_message(
        AssistantMessage(tool_calls=calls), tool_prompt_format=ToolPromptFormat.python_list
    )
    assert text == msg("assistant", "[a(x=1)][b(y=2)]")


def test_openai_dicts_render_like_messages() -> None:
    dicts: list[MessageLike] = [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
    ]
    typed: list[MessageLike] = [
        UserMessage(content="Hi"),
        AssistantMessage(tool_calls=[ToolCall(call_id="c", tool_name="f")]),
        ToolMessage(call_id="c", content="ok"),
    ]
    assert format_dialog(dicts) == format_dialog(typed)
    assert format_dialog(dicts).endswith(msg("ipython", "ok") + GEN)


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("The capital of France is", "<|begin_of_text|>The capital of France is"),
        (
            [IMG, TextContent(text="If I had to write a haiku for this one")],
            "<|begin_of_text|><|image|>If I had to write a haiku for this one",
        ),
        (
            [TextContent(text="Picture: "), IMG, TextContent(text=" caption:")],
            "<|begin_of_text|>Picture: <|image|> caption:",
        ),
    ],
)
def test_format_base(content: str | list[ContentPart], text: str) -> None:
    assert format_base(content) == text
    reference = _chat_format().encode_content(_raw_content(content)).tokens
    image_id = SPECIAL_TOKEN_IDS[IMAGE]
    decoded = _chat_format().tokenizer.decode(
        [image_id if t == VISION_IMAGE_ID else t for t in reference]
    )
    assert decoded == text


# --- system prompt assembly: Llama 3.1 / 3.2 Vision --------------------------------------------


def _system_body(model: str, tools: Sequence[ToolDefinition], system: str | None = None) -> str:
    messages: list[MessageLike] = [] if system is None else [SystemMessage(content=system)]
    messages.append(UserMessage(content="hi"))
    first = assemble_messages(messages, model=model, tools=tools, today=TODAY)[0]
    assert isinstance(first, SystemMessage)
    assert isinstance(first.content, str)
    return first.content


@pytest.mark.parametrize("model", [L31, VISION])
@pytest.mark.parametrize(
    ("tools", "system", "body"),
    [
        (
            [BRAVE, WOLFRAM],
            "You are a helpful assistant.",
            "Environment: ipython\nTools: brave_search, wolfram_alpha\n"
            + DATE
            + "\nYou are a helpful assistant.",
        ),
        (
            [CODE, BRAVE, WOLFRAM],
            "You are a helpful assistant.",
            "Environment: ipython\nTools: brave_search, wolfram_alpha\n"
            + DATE
            + "\nYou are a helpful assistant.",
        ),
        ([CODE], None, "Environment: ipython\n\n" + DATE),
        ([TRENDING], None, "Environment: ipython\n\n" + DATE),
        ([], None, DATE),
        ([], "You are a helpful assistant.", DATE + "\nYou are a helpful assistant."),
        ([], "", DATE + "\n"),
    ],
)
def test_llama3_1_system_bodies(
    model: str, tools: list[ToolDefinition], system: str | None, body: str
) -> None:
    assert _system_body(model, tools, system) == body


def test_llama3_1_full_prompt_with_builtin_tools() -> None:
    text = render_prompt(
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the weather today?"},
        ],
        model=L31,
        tools=[BRAVE, WOLFRAM],
        today=TODAY,
    )
    assert text == (
        BOT
        + msg(
            "system",
            "Environment: ipython\nTools: brave_search, wolfram_alpha\n"
            + DATE
            + "\nYou are a helpful assistant.",
        )
        + msg("user", "What is the weather today?")
        + GEN
    )


@pytest.mark.parametrize(
    ("fmt", "tool_prompt"),
    [
        (None, sp.json_tools_prompt([TRENDING])),
        (ToolPromptFormat.json, sp.json_tools_prompt([TRENDING])),
        (ToolPromptFormat.function_tag, sp.function_tag_tools_prompt([TRENDING])),
    ],
)
def test_llama3_1_custom_tools_go_in_a_user_message_after_the_system(
    fmt: ToolPromptFormat | None, tool_prompt: str
) -> None:
    history = AssistantMessage(tool_calls=[ToolCall(tool_name="trending_songs")])
    text = render_prompt(
        [UserMessage(content="Top songs?"), history, ToolMessage(call_id="1", content="[]")],
        model=L31,
        tools=[BRAVE, TRENDING],
        tool_prompt_format=fmt,
        today=TODAY,
    )
    call = (
        "<function=trending_songs>{}</function>"
        if fmt is ToolPromptFormat.function_tag
        else '{"type": "function", "name": "trending_songs", "parameters": {}}'
    )
    assert text == (
        BOT
        + msg("system", "Environment: ipython\nTools: brave_search\n" + DATE)
        + msg("user", tool_prompt)
        + msg("user", "Top songs?")
        + msg("assistant", call)
        + msg("ipython", "[]")
        + GEN
    )


def test_system_text_given_as_parts_is_joined_with_newlines() -> None:
    parts = [TextContent(text="Be brief."), TextContent(text="Answer in French.")]
    body = _system_body(L31, [], None)
    assembled = assemble_messages(
        [SystemMessage(content=parts), UserMessage(content="hi")], model=L31, today=TODAY
    )
    assert assembled[0] == SystemMessage(content=body + "\nBe brief.\nAnswer in French.")
    assembled = assemble_messages(
        [SystemMessage(content=parts), UserMessage(content="hi")], model=L32
    )
    assert assembled[0] == SystemMessage(content="Be brief.\nAnswer in French.")


@pytest.mark.parametrize(
    ("choice", "sentence"),
    [
        ("required", "You MUST use one of the provided functions/tools to answer the user query."),
        ("trending_songs", "You MUST use the tool `trending_songs` to answer the user query."),
        ("brave_search", "You MUST use the tool `brave_search` to answer the user query."),
    ],
)
def test_tool_choice_sentence_ends_the_system_prompt(choice: str, sentence: str) -> None:
    assembled = assemble_messages(
        [SystemMessage(content="Sys."), UserMessage(content="hi")],
        model=L31,
        tools=[BRAVE, TRENDING],
        tool_choice=choice,
        today=TODAY,
    )
    expected = "Environment: ipython\nTools: brave_search\n" + DATE + "\nSys.\n" + sentence
    assert assembled[0] == SystemMessage(content=expected)


def test_tool_choice_none_leaves_every_tool_out() -> None:
    with_none = render_prompt(
        [UserMessage(content="hi")],
        model=L31,
        tools=[BRAVE, TRENDING],
        tool_choice="none",
        today=TODAY,
    )
    assert with_none == render_prompt([UserMessage(content="hi")], model=L31, today=TODAY)
    assert "Environment" not in with_none


def test_response_format_adds_a_last_user_message() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    text = render_prompt(
        [UserMessage(content="hi")], model=L31, response_format=schema, today=TODAY
    )
    assert text == (
        BOT
        + msg("system", DATE)
        + msg("user", "hi")
        + msg("user", sp.response_format_prompt(schema))
        + GEN
    )


def test_today_defaults_to_the_local_date() -> None:
    before = sp.date_block(dt.date.today())
    assembled = assemble_messages([UserMessage(content="x")], model=L31)
    after = sp.date_block(dt.date.today())
    assert assembled[0].content in (before, after)


def test_later_system_messages_stay_in_place() -> None:
    assembled = assemble_messages(
        [UserMessage(content="a"), SystemMessage(content="mid"), UserMessage(content="b")],
        model=L32,
    )
    assert [m.role for m in assembled] == ["system", "user", "system", "user"]
    assert assembled[2] == SystemMessage(content="mid")


# --- system prompt assembly: Llama 3.2 text / 3.3 ----------------------------------------------


def test_llama3_2_without_tools_or_system_still_sends_an_empty_system_message() -> None:
    assert render_prompt([UserMessage(content="hi")], model=L32) == (
        BOT + msg("system", "") + msg("user", "hi") + GEN
    )


def test_llama3_2_custom_tools_only_have_no_environment_line_and_no_dates() -> None:
    tools = [WEATHER]
    assert _system_body(L32, tools) == sp.python_list_tools_prompt(tools)
    assert _system_body(L32, tools, "You are terse.") == (
        sp.python_list_tools_prompt(tools) + "\nYou are terse."
    )


def test_llama3_2_system_text_alone() -> None:
    assert _system_body(L32, [], "\nYou are terse.\n") == "You are terse."


def test_llama3_3_builtin_and_custom_tools() -> None:
    body = _system_body(L33, [WEATHER, BRAVE, CODE])
    assert body == (
        "Environment: ipython\nTools: brave_search\n" + sp.python_list_tools_prompt([WEATHER])
    )
    assert _system_body(L33, [CODE], "Sys.") == "Environment: ipython\n\nSys."
    assert _system_body(L33, [CODE]) == "Environment: ipython"


def test_llama3_2_tool_choice_and_python_list_history() -> None:
    text = render_prompt(
        [
            UserMessage(content="Weather in SF and NYC?"),
            AssistantMessage(
                tool_calls=[
                    ToolCall(tool_name="get_weather", arguments={"city": "SF"}),
                    ToolCall(tool_name="get_weather", arguments={"city": "NYC"}),
                ],
                stop_reason=StopReason.end_of_turn,
            ),
            ToolMessage(call_id="1", content="sunny"),
            ToolMessage(call_id="2", content="rain"),
        ],
        model=L32,
        tools=[WEATHER],
        tool_choice="required",
    )
    # The tool prompt is followed by "\n", the sentence preceded by one: a blank line between.
    system = sp.python_list_tools_prompt([WEATHER]) + "\n\n" + sp.tool_choice_prompt("required")
    assert text == (
        BOT
        + msg("system", system)
        + msg("user", "Weather in SF and NYC?")
        + msg("assistant", '[get_weather(city="SF")][get_weather(city="NYC")]')
        + msg("ipython", "sunny")
        + msg("ipython", "rain")
        + GEN
    )


# --- base models -------------------------------------------------------------------------------


def test_base_model_prompt_is_the_concatenated_user_text() -> None:
    text = render_prompt(
        [UserMessage(content="Picture: "), UserMessage(content=[IMG, TextContent(text=" cap")])],
        model="Llama3.2-1B",
    )
    assert text == "<|begin_of_text|>Picture: <|image|> cap"
    schema = {"type": "object"}
    text = render_prompt(
        [{"role": "user", "content": "Q:", "context": "doc"}],
        model="meta-llama/Llama-3.1-8B",
        response_format=schema,
    )
    assert text == BOT + "Q:\n\ndoc" + sp.response_format_prompt(schema)


def test_base_model_rejects_chat_roles_and_tools() -> None:
    with pytest.raises(ConfigError, match="base models take user text only"):
        render_prompt([SystemMessage(content="s")], model="Llama3.1-8B")
    with pytest.raises(UnsupportedFeatureError, match="cannot call custom tools"):
        render_prompt([UserMessage(content="s")], model="Llama3.1-8B", tools=[WEATHER])


# --- errors ------------------------------------------------------------------------------------


def test_unknown_tool_choice_names_the_valid_choices() -> None:
    with pytest.raises(ConfigError) as info:
        render_prompt([UserMessage(content="hi")], model=L31, tools=[TRENDING], tool_choice="x")
    assert "'auto', 'required', 'none', 'trending_songs'" in str(info.value)


def test_required_tool_choice_needs_tools() -> None:
    with pytest.raises(ConfigError, match="at least one tool"):
        render_prompt([UserMessage(content="hi")], model=L31, tool_choice="required")


@pytest.mark.parametrize(
    ("model", "fmt"),
    [
        (L31, ToolPromptFormat.python_list),
        (L32, ToolPromptFormat.json),
        (L33, ToolPromptFormat.function_tag),
    ],
)
def test_tool_format_the_model_does_not_take(model: str, fmt: ToolPromptFormat) -> None:
    with pytest.raises(UnsupportedFeatureError, match=fmt.value):
        render_prompt(
            [UserMessage(content="hi")], model=model, tools=[WEATHER], tool_prompt_format=fmt
        )


def test_unknown_tool_format_string() -> None:
    with pytest.raises(ConfigError, match="unknown tool prompt format"):
        render_prompt([UserMessage(content="hi")], model=L31, tool_prompt_format="xml")  # type: ignore[arg-type]  # a caller passing an unchecked string


def test_builtin_tools_on_a_model_not_trained_for_them() -> None:
    with pytest.raises(UnsupportedFeatureError, match="brave_search"):
        render_prompt([UserMessage(content="hi")], model=L32, tools=[BRAVE])


def test_guard_models_are_rendered_elsewhere() -> None:
    with pytest.raises(UnsupportedFeatureError, match="guard"):
        render_prompt([UserMessage(content="hi")], model="Llama-Guard-3-1B")
    with pytest.raises(UnsupportedFeatureError, match="guard"):
        PromptCache().render("k", [UserMessage(content="hi")], model="Llama-Guard-3-8B")


def test_unknown_model() -> None:
    with pytest.raises(UnknownModelError) as info:
        render_prompt([UserMessage(content="hi")], model="gpt-5")
    assert info.value.closest is None
    assert "Did you mean" not in str(info.value)


def test_a_misspelt_model_names_the_closest_known_one() -> None:
    with pytest.raises(UnknownModelError, match=r"Did you mean 'meta-llama/Llama-3\.2-11B-Vision"):
        render_prompt([UserMessage(content="hi")], model="meta-llama/Llama-3.2-11B-Vision-Instrct")


def test_malformed_conversations() -> None:
    with pytest.raises(ConfigError, match="tool names must be unique"):
        render_prompt([UserMessage(content="hi")], model=L31, tools=[WEATHER, WEATHER])
    with pytest.raises(ConfigError, match="one leading system message"):
        render_prompt([SystemMessage(content="a"), SystemMessage(content="b")], model=L31)
    with pytest.raises(UnsupportedFeatureError, match="cannot hold images"):
        render_prompt([SystemMessage(content=[IMG])], model=VISION)
    with pytest.raises(ConfigError, match="invalid message"):
        render_prompt([{"role": "wizard", "content": "x"}], model=L31)


# --- PromptCache -------------------------------------------------------------------------------

Options = dict[str, Any]
OPTION_SETS: list[Options] = [
    {"model": L31, "today": TODAY},
    {"model": L31, "tools": [BRAVE, TRENDING], "today": TODAY},
    {"model": L31, "tools": [TRENDING], "tool_prompt_format": ToolPromptFormat.function_tag},
    {"model": L31, "tools": [TRENDING], "tool_choice": "trending_songs", "today": TODAY},
    {"model": L32, "tools": [WEATHER]},
    {"model": L32, "response_format": {"type": "object"}},
    {"model": L33, "tools": [CODE, WEATHER], "response_format": {"type": "string"}},
]


def _random_message(rng: random.Random, as_dict: bool) -> MessageLike:
    kind = rng.randrange(4)
    text = rng.choice(["hi", "", " x \n", "Zürich", "<|eot_id|>"]) + str(rng.randrange(99))
    if kind == 0 or as_dict:
        return {"role": "user", "content": text}
    if kind == 1:
        call = ToolCall(tool_name=rng.choice(["get_weather", "code_interpreter"]))
        return AssistantMessage(
            content=text,
            tool_calls=[call] if rng.random() < 0.5 else [],
            stop_reason=rng.choice([None, StopReason.end_of_message]),
        )
    if kind == 2:
        return ToolMessage(call_id="1", content=text)
    return UserMessage(content=[TextContent(text=text), IMG], context=text or None)


def _mutate(rng: random.Random, conversation: list[MessageLike]) -> list[MessageLike]:
    """One step of a random session: mostly appends, sometimes edits, truncates, drops the
    oldest messages (as the context budget does) or restarts."""
    action = rng.random()
    if action < 0.1 and conversation:
        kept = conversation[rng.randrange(len(conversation)) :]
        return kept + [_random_message(rng, False) for _ in range(rng.randint(0, 2))]
    if action < 0.7 or not conversation:
        as_dict = rng.random() < 0.3
        return conversation + [_random_message(rng, as_dict) for _ in range(rng.randint(0, 3))]
    if action < 0.8:
        edited = list(conversation)
        edited[rng.randrange(len(edited))] = _random_message(rng, False)
        return edited
    if action < 0.9:
        return conversation[: rng.randrange(len(conversation))]
    first = conversation[0]
    if isinstance(first, dict):
        first["content"] = "edited in place"  # the cache must notice edited dicts
    return conversation


@pytest.mark.parametrize("seed", range(12))
def test_cache_output_equals_full_render_for_random_sessions(seed: int) -> None:
    rng = random.Random(seed)
    cache = PromptCache(max_entries=3)
    sessions: dict[str, list[MessageLike]] = {}
    options: dict[str, Options] = {}
    systems: dict[str, SystemMessage | str | None] = {}
    for _ in range(120):
        key = rng.choice(["a", "b", "c", "d"])
        if key not in options or rng.random() < 0.05:
            options[key] = rng.choice(OPTION_SETS)
        opts = options[key]
        sessions[key] = _mutate(rng, sessions.get(key, []))
        system = systems.get(key)
        if rng.random() < 0.1:
            systems[key] = system = rng.choice([None, SystemMessage(content="Sys."), "Other."])
        if isinstance(system, str):
            conversation = [{"role": "system", "content": system}, *sessions[key]]
        else:
            conversation = [system, *sessions[key]] if system else sessions[key]
        assert cache.render(key, conversation, **opts) == render_prompt(conversation, **opts)
        entries = cache._entries.values()
        assert all(len(e.images) == len(e.seen) == len(e.starts) for e in entries)
        assert cache.chars == sum(len(e.prefix) + sum(e.images) for e in entries)
    assert cache.stats.hits > 0
    assert cache.stats.misses > 0


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every message encoding done by the prompt module."""
    calls = [0]
    real: Callable[[Message, ToolPromptFormat], str] = prompt_module._encode_message

    def counted(message: Message, fmt: ToolPromptFormat) -> str:
        calls[0] += 1
        return real(message, fmt)

    monkeypatch.setattr(prompt_module, "_encode_message", counted)
    return calls


def test_cache_work_per_call_stays_flat_as_the_conversation_grows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _counting(monkeypatch)
    cache = PromptCache()
    options: Options = {"model": L31, "tools": [BRAVE, TRENDING], "today": TODAY}
    conversation: list[MessageLike] = [SystemMessage(content="Sys.")]
    cached_work, full_work = [], []
    for turn in range(150):
        conversation = [*conversation, {"role": "user", "content": f"question {turn}"}]
        if turn % 2:
            conversation.append(AssistantMessage(content=f"answer {turn}"))
        before = calls[0]
        cached = cache.render("session", conversation, **options)
        cached_work.append(calls[0] - before)
        before = calls[0]
        assert cached == render_prompt(conversation, **options)
        full_work.append(calls[0] - before)
    assert max(cached_work[1:]) <= 2  # only the messages appended since the last call
    assert full_work[-1] > 200  # a full render re-encodes the whole history every call
    assert cache.stats.encoded_messages == sum(cached_work)
    assert (cache.stats.hits, cache.stats.misses) == (149, 1)


def test_cache_drops_the_oldest_messages_without_encoding_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _counting(monkeypatch)
    cache = PromptCache()
    options: Options = {"model": L31, "tools": [TRENDING], "today": TODAY}
    system = SystemMessage(content="Sys.")
    history: list[MessageLike] = [
        m
        for turn in range(40)
        for m in (UserMessage(content="same question"), AssistantMessage(content=f"a{turn}"))
    ]
    cache.render("s", [system, *history], **options)
    for start in (2, 10, 11, 40, 60):  # whole turns, a message, then past some appended ones
        history.append(UserMessage(content="new"))
        before = calls[0]
        text = cache.render("s", [system, *history[start:]], **options)
        assert calls[0] - before == 1  # only the new message is encoded
        assert text == render_prompt([system, *history[start:]], **options)
    assert (cache.stats.hits, cache.stats.misses) == (5, 1)
    other = [UserMessage(content="unrelated")]
    assert cache.render("s", [system, *other], **options) == render_prompt(
        [system, *other], **options
    )
    assert cache.stats.misses == 2


def test_cache_keeps_the_response_format_tail_out_of_the_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _counting(monkeypatch)
    cache = PromptCache()
    conversation: list[MessageLike] = [UserMessage(content="a")]
    schema = {"type": "object"}
    cache.render("k", conversation, model=L32, response_format=schema)
    conversation = [*conversation, AssistantMessage(content="{}"), UserMessage(content="b")]
    before = calls[0]
    text = cache.render("k", conversation, model=L32, response_format=schema)
    assert calls[0] - before == 3  # two new messages + the format request, nothing else
    assert text == render_prompt(conversation, model=L32, response_format=schema)
    assert text.endswith(msg("user", sp.response_format_prompt(schema)) + GEN)


def test_cache_renders_in_full_when_history_or_options_change() -> None:
    cache = PromptCache()
    first: list[MessageLike] = [UserMessage(content="a"), AssistantMessage(content="b")]
    cache.render("k", first, model=L31, today=TODAY)
    edited: list[MessageLike] = [
        UserMessage(content="A"),
        AssistantMessage(content="b"),
        UserMessage(content="c"),
    ]
    assert cache.render("k", edited, model=L31, today=TODAY) == render_prompt(
        edited, model=L31, today=TODAY
    )
    other_day = dt.date(2025, 3, 5)
    assert "05 March 2025" in cache.render("k", edited, model=L31, today=other_day)
    with_tools = cache.render("k", edited, model=L31, tools=[BRAVE], today=other_day)
    assert "Tools: brave_search" in with_tools
    assert (cache.stats.hits, cache.stats.misses) == (0, 4)


def test_cache_is_lru_bounded_by_key() -> None:
    cache = PromptCache(max_entries=2)
    conversation = [UserMessage(content="a")]
    for key in ("a", "b"):
        cache.render(key, conversation, model=L32)
    cache.render("a", conversation, model=L32)  # "a" is now the most recent
    cache.render("c", conversation, model=L32)  # evicts "b"
    assert len(cache) == 2
    misses = cache.stats.misses
    cache.render("a", conversation, model=L32)
    assert cache.stats.misses == misses
    cache.render("b", conversation, model=L32)
    assert cache.stats.misses == misses + 1
    cache.clear()
    assert len(cache) == 0


def test_cache_without_key_or_for_base_models_does_not_store() -> None:
    cache = PromptCache()
    assert cache.render(None, [UserMessage(content="a")], model=L32) == render_prompt(
        [UserMessage(content="a")], model=L32
    )
    assert cache.render("k", [UserMessage(content="a")], model="Llama3.2-1B") == BOT + "a"
    assert len(cache) == 0


def test_cache_rejects_invalid_messages_without_corrupting_the_entry() -> None:
    cache = PromptCache()
    conversation: list[MessageLike] = [UserMessage(content="a")]
    cache.render("k", conversation, model=L32)
    with pytest.raises(ConfigError):
        cache.render("k", [*conversation, {"role": "wizard"}], model=L32)
    grown = [*conversation, UserMessage(content="b")]
    assert cache.render("k", grown, model=L32) == render_prompt(grown, model=L32)


def test_cache_needs_room_for_one_entry() -> None:
    with pytest.raises(ConfigError):
        PromptCache(max_entries=0)
    with pytest.raises(ConfigError):
        PromptCache(max_chars=0)


def test_cache_evicts_by_characters_least_recently_used_first() -> None:
    long: list[Message] = [UserMessage(content="x" * 2000)]
    cache = PromptCache(max_chars=5000)
    cache.render("a", long, model=L32)
    cache.render("b", long, model=L32)
    assert len(cache) == 2
    cache.render("a", [*long, AssistantMessage(content="y" * 2000)], model=L32)
    assert len(cache) == 1  # "a" grew past the bound with "b": "b" was the older
    grown: list[Message] = [
        *long,
        AssistantMessage(content="y" * 2000),
        UserMessage(content="z" * 4000),
    ]
    assert cache.render("a", grown, model=L32) == render_prompt(grown, model=L32)
    assert len(cache) == 1  # the newest stays, even alone over the bound
    assert cache.chars > 5000
    cache.clear()
    assert cache.chars == 0


def test_cache_counts_the_images_its_messages_hold_against_max_chars() -> None:
    # a data URL is the whole image, held by the cached messages though the prompt shows one
    # <|image|>: sessions with distinct 200 kB images must not pile up past the bound
    cache = PromptCache(max_chars=1_000_000)
    for i in range(20):
        image = ImageContent(url=f"data:image/png;base64,{i:08}" + "A" * 200_000)
        conversation = [UserMessage(content=[TextContent(text="what is it?"), image])]
        cache.render(f"session-{i}", conversation, model=VISION)
        assert cache.chars <= 1_000_000
    assert 1 < len(cache) <= 5
    tracemalloc.start()
    try:
        for i in range(20, 40):
            image = ImageContent(url=f"data:image/png;base64,{i:08}" + "A" * 200_000)
            conversation = [UserMessage(content=[TextContent(text="what is it?"), image])]
            cache.render(f"session-{i}", conversation, model=VISION)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1_500_000  # the bound, not 20 images (4 MB)
    grown: list[Message] = [*conversation, AssistantMessage(content="x")]
    assert cache.render("session-39", grown, model=VISION) == render_prompt(grown, model=VISION)
    before = cache.chars
    later: list[Message] = [grown[1], UserMessage(content="y")]  # the image's turn dropped
    assert cache.render("session-39", later, model=VISION) == render_prompt(later, model=VISION)
    assert cache.stats.misses == 40
    assert before - cache.chars > 200_000
