"""vLLM's OpenAI-compatible request fields and response shapes, as plain dicts.

Shapes follow vLLM's pydantic models and how its serving code dumps them:
``vllm/entrypoints/openai/completion/{protocol,serving}.py`` (stream chunks dumped with
``exclude_unset``, the usage chunk with ``exclude_none``), ``chat_completion/{protocol,serving}.py``
(role chunk first, ``tool_calls`` left out when empty), ``generate/base/protocol.py`` (DeltaMessage,
DeltaToolCall), ``engine/protocol.py`` and ``engine/serving.py`` (ErrorResponse, UsageInfo,
ModelCard, ``_check_model``), ``vllm/renderers/params.py`` (the context-length messages).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from agentic.testing._generation import Generation, StopConfig, count_tokens

__all__ = [
    "DONE",
    "ApiError",
    "GenRequest",
    "chat_prompt",
    "chat_response",
    "chat_stream",
    "check_input_length",
    "completion_response",
    "completion_stream",
    "dumps",
    "error_body",
    "error_type",
    "model_list",
    "new_id",
    "parse_gen_request",
    "sse",
    "usage",
]

_ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    422: "UnprocessableEntityError",
    500: "InternalServerError",
    501: "NotImplementedError",
}


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_quote: Callable[[str], str] = json.encoder.encode_basestring


def dumps(obj: Any) -> str:
    """Compact JSON, as pydantic's ``model_dump_json`` writes it."""
    return _ENCODER.encode(obj)


def sse(obj: Any) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return f"data: {dumps(obj)}\n\n".encode()


class ApiError(Exception):
    """An error answer in vLLM's ErrorResponse shape."""

    def __init__(
        self, status: int, message: str, err_type: str | None = None, param: str | None = None
    ) -> None:
        self.status = status
        self.message = message
        self.err_type = err_type or error_type(status)
        self.param = param
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.err_type, self.status, self.param)


def error_type(status: int) -> str:
    """vLLM's ``type`` for an error status (its HTTP handler uses the status phrase)."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(message: str, err_type: str, code: int, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def _bad(message: str, param: str | None = None) -> ApiError:
    """A request-validation failure: pydantic errors reach clients as type ``Bad Request``."""
    return ApiError(400, f"1 validation error:\n  Value error, {message}", "Bad Request", param)


@dataclass(frozen=True, slots=True)
class GenRequest:
    """The fields of a completions / chat request that shape the answer."""

    chat: bool
    model: str | None
    stream: bool
    include_usage: bool
    prompt_tokens: int
    max_tokens: int | None
    max_tokens_param: str
    stop: StopConfig
    tools: bool
    named_tool: bool

    def checked(self, max_model_len: int) -> StopConfig:
        """vLLM's context-length checks; returns the stop settings with max_tokens resolved."""
        requested = self.max_tokens or 0
        if requested > max_model_len:
            raise ApiError(
                400,
                f"{self.max_tokens_param}={requested}cannot be greater than max_model_len="
                f"max_total_tokens={max_model_len}. Please request fewer output tokens.",
                param=self.max_tokens_param,
            )
        check_input_length(self.prompt_tokens, requested, max_model_len)
        room = max_model_len - self.prompt_tokens
        max_tokens = room if self.max_tokens is None else min(self.max_tokens, room)
        return StopConfig(
            max_tokens=max(max_tokens, 1),
            stop=self.stop.stop,
            stop_token_ids=self.stop.stop_token_ids,
            ignore_eos=self.stop.ignore_eos,
            include_stop_str_in_output=self.stop.include_stop_str_in_output,
            skip_special_tokens=self.stop.skip_special_tokens,
        )


def check_input_length(prompt_tokens: int, requested: int, max_model_len: int) -> None:
    """vLLM's check that a prompt leaves room for ``requested`` tokens (``/tokenize`` asks for
    none). vLLM stops tokenizing one token past the limit, so it reports at most that many."""
    limit = max_model_len - requested
    if prompt_tokens > limit:
        raise ApiError(
            400,
            f"You passed {min(prompt_tokens, limit + 1)} input tokens and requested {requested} "
            f"output tokens. However, the model's context length is only {max_model_len} "
            f"tokens, resulting in a maximum input length of {limit} tokens. Please reduce the "
            "length of the input prompt.",
            param="input_tokens",
        )


def _field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(f"`{name}` has an invalid value {value!r}", name)
    return value


def _stop_strings(body: Mapping[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) and s for s in stop):
        return tuple(stop)
    raise _bad("`stop` must be a string or a list of non-empty strings", "stop")


def _stop_config(body: Mapping[str, Any]) -> StopConfig:
    ids = _field(body, "stop_token_ids", list, [])
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise _bad("`stop_token_ids` must be a list of integers", "stop_token_ids")
    return StopConfig(
        max_tokens=1,  # resolved by GenRequest.checked
        stop=_stop_strings(body),
        stop_token_ids=frozenset(ids),
        ignore_eos=bool(_field(body, "ignore_eos", bool, False)),
        include_stop_str_in_output=bool(_field(body, "include_stop_str_in_output", bool, False)),
        skip_special_tokens=bool(_field(body, "skip_special_tokens", bool, True)),
    )


def _completion_prompt_tokens(body: Mapping[str, Any]) -> int:
    prompt = body.get("prompt")
    bos = 1 if _field(body, "add_special_tokens", bool, True) else 0
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str) and prompt:
        return count_tokens(prompt) + bos
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    if isinstance(prompt, list) and prompt:
        raise ApiError(400, "VLLMTestServer answers one prompt per request, not a batch")
    raise _bad("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return ""


def chat_prompt(messages: Sequence[Mapping[str, Any]], tools: Any = None) -> str:
    """The messages in Llama 3's chat format (tools as JSON in a system block), for counting."""
    parts = ["<|begin_of_text|>"]
    if tools:
        parts.append(f"<|start_header_id|>system<|end_header_id|>\n\n{dumps(tools)}<|eot_id|>")
    for message in messages:
        role = "ipython" if message.get("role") == "tool" else str(message.get("role"))
        text = _content_text(message.get("content"))
        if message.get("tool_calls"):
            text += dumps(message["tool_calls"])
        parts.append(f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>")
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


def _chat_prompt_tokens(body: Mapping[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
        raise _bad("`messages` must be a list of message objects", "messages")
    return count_tokens(chat_prompt(messages, body.get("tools")))


def _max_tokens(body: Mapping[str, Any], chat: bool) -> tuple[int | None, str]:
    if chat and body.get("max_completion_tokens") is not None:
        return _field(body, "max_completion_tokens", int, None), "max_completion_tokens"
    value: int | None = _field(body, "max_tokens", int, None)
    if value is None and not chat:
        value = 16  # CompletionRequest.max_tokens defaults to 16, also when sent as null
    return value, "max_tokens"


def _tool_choice(body: Mapping[str, Any]) -> tuple[bool, bool]:
    """(parse tool calls, a named tool was forced)."""
    tools = body.get("tools")
    if tools == []:
        raise _bad("`tools` must not be an empty array.", "tools")
    choice = body.get("tool_choice", "auto" if tools else "none")
    if choice not in (None, "none", "auto", "required") and not isinstance(choice, Mapping):
        raise _bad(f"Invalid value for `tool_choice`: {choice}!", "tool_choice")
    if choice not in (None, "none") and not tools:
        raise _bad("When using `tool_choice`, `tools` must be set.", "tool_choice")
    return bool(tools) and choice not in (None, "none"), isinstance(choice, Mapping)


def _check_structured_outputs(body: Mapping[str, Any]) -> None:
    """vLLM's checks on ``structured_outputs`` and ``response_format`` (the scripted text is
    returned as is: constraining it is the script's job)."""
    params = _field(body, "structured_outputs", Mapping, {})
    if sum(params.get(k) is not None for k in ("json", "regex", "choice")) > 1:
        raise _bad(
            "You can only use one kind of constraints for structured outputs "
            "('json', 'regex' or 'choice').",
            "structured_outputs",
        )
    fmt = _field(body, "response_format", Mapping, {})
    if fmt.get("type") == "json_schema" and fmt.get("json_schema") is None:
        raise _bad(
            "When response_format type is 'json_schema', the 'json_schema' field must be provided.",
            "response_format",
        )


def parse_gen_request(body: Mapping[str, Any], chat: bool) -> GenRequest:
    """Validate a ``/v1/completions`` or ``/v1/chat/completions`` body as vLLM would."""
    stream = bool(_field(body, "stream", bool, False))
    options = _field(body, "stream_options", Mapping, None)
    if options is not None and not stream:
        raise _bad("Stream options can only be defined when `stream=True`.", "stream_options")
    if _field(body, "n", int, 1) != 1:
        raise ApiError(400, "VLLMTestServer generates one choice per request (n=1)", param="n")
    _check_structured_outputs(body)
    model = _field(body, "model", str, None)
    max_tokens, max_param = _max_tokens(body, chat)
    tools, named = _tool_choice(body) if chat else (False, False)
    prompt_tokens = _chat_prompt_tokens(body) if chat else _completion_prompt_tokens(body)
    return GenRequest(
        chat=chat,
        model=model,
        stream=stream,
        include_usage=bool(options and options.get("include_usage")),
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        max_tokens_param=max_param,
        stop=_stop_config(body),
        tools=tools,
        named_tool=named,
    )


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def new_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"


def completion_response(
    rid: str, model: str, gen: Generation, prompt_tokens: int
) -> dict[str, Any]:
    """A non-streaming ``/v1/completions`` answer (``model_dump()``: nulls included)."""
    choice = {
        "index": 0,
        "text": gen.text,
        "logprobs": None,
        "finish_reason": gen.finish_reason,
        "stop_reason": gen.stop_reason,
        "token_ids": None,
        "prompt_logprobs": None,
        "prompt_token_ids": None,
    }
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "service_tier": None,
        "system_fingerprint": None,
        "usage": {**usage(prompt_tokens, gen.completion_tokens), "prompt_tokens_details": None},
        "kv_transfer_params": None,
    }


def chat_response(
    rid: str,
    model: str,
    gen: Generation,
    prompt_tokens: int,
    tool_calls: list[dict[str, Any]] | None,
    finish_reason: str,
) -> dict[str, Any]:
    """A non-streaming ``/v1/chat/completions`` answer."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tool_calls else gen.text,
        "refusal": None,
        "annotations": None,
        "audio": None,
        "function_call": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    message["reasoning"] = None
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason,
        "stop_reason": gen.stop_reason,
        "token_ids": None,
    }
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "service_tier": None,
        "system_fingerprint": None,
        "usage": {**usage(prompt_tokens, gen.completion_tokens), "prompt_tokens_details": None},
        "prompt_logprobs": None,
        "prompt_token_ids": None,
        "kv_transfer_params": None,
    }


def model_list(models: Sequence[str], max_model_len: int, created: int) -> dict[str, Any]:
    """``GET /v1/models``: one ModelCard per served name."""
    permission = {
        "id": f"modelperm-{uuid.uuid4().hex}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }
    data = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": name,
            "parent": None,
            "max_model_len": max_model_len,
            "permission": [permission],
        }
        for name in models
    ]
    return {"object": "list", "data": data}


DONE = b"data: [DONE]\n\n"


def _steps(lead: list[bytes], events: list[bytes], tail: list[bytes]) -> list[list[bytes]]:
    """Group events into what is sent together: ``lead`` with the first event, ``tail`` with
    the last (usage chunk, ``[DONE]``)."""
    steps = [[*lead, events[0]], *([e] for e in events[1:])]
    steps[-1].extend(tail)
    return steps


def completion_stream(
    rid: str, model: str, gen: Generation, prompt_tokens: int, include_usage: bool
) -> list[list[bytes]]:
    """The SSE events of a streamed ``/v1/completions`` answer, one step per token.

    Built from string templates: this runs once per streamed request, for every token.
    """
    head = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model}
    prefix = f'data: {dumps(head)[:-1]},"choices":[{{"index":0,"text":'
    rest = '"prompt_token_ids":null,"token_ids":null}]}\n\n'
    middle = f',"logprobs":null,"finish_reason":null,"stop_reason":null,{rest}'
    final = (
        f',"logprobs":null,"finish_reason":{dumps(gen.finish_reason)},'
        f'"stop_reason":{dumps(gen.stop_reason)},{rest}'
    )
    events = [(prefix + _quote(text) + middle).encode() for text in gen.deltas[:-1]]
    events.append((prefix + _quote(gen.deltas[-1]) + final).encode())
    tail = [sse({**head, "choices": [], "usage": usage(prompt_tokens, gen.completion_tokens)})]
    return _steps([], events, [*tail[:include_usage], DONE])


def _tool_deltas(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per call: the name (with id and type), then the JSON arguments in up to four pieces."""
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(tool_calls):
        name, args = call["function"]["name"], call["function"]["arguments"]
        first = {"id": call["id"], "type": "function", "index": index, "function": {"name": name}}
        deltas.append({"tool_calls": [first]})
        size = max(1, -(-len(args) // 4))
        deltas.extend(
            {"tool_calls": [{"index": index, "function": {"arguments": args[i : i + size]}}]}
            for i in range(0, len(args), size)
        )
    deltas.append({})
    return deltas


def chat_stream(
    rid: str,
    model: str,
    gen: Generation,
    prompt_tokens: int,
    include_usage: bool,
    tool_calls: list[dict[str, Any]] | None,
    finish_reason: str,
) -> list[list[bytes]]:
    """The SSE events of a streamed ``/v1/chat/completions`` answer."""
    head = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time())}
    head["model"] = model
    role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None}
    lead = sse({**head, "choices": [{**role, "finish_reason": None}], "prompt_token_ids": None})
    deltas = _tool_deltas(tool_calls) if tool_calls else [{"content": t} for t in gen.deltas]
    prefix = f'data: {dumps(head)[:-1]},"choices":[{{"index":0,"delta":'
    middle = ',"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n'
    final = (
        f',"logprobs":null,"finish_reason":{dumps(finish_reason)},'
        f'"stop_reason":{dumps(gen.stop_reason)},"token_ids":null}}]}}\n\n'
    )
    events = [(prefix + dumps(delta) + middle).encode() for delta in deltas[:-1]]
    events.append((prefix + dumps(deltas[-1]) + final).encode())
    tail = [sse({**head, "choices": [], "usage": usage(prompt_tokens, gen.completion_tokens)})]
    return _steps([lead], events, [*tail[:include_usage], DONE])
