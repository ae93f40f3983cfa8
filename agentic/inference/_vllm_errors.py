"""The typed errors :class:`~agentic.inference.vllm_server.VLLMServer` raises, with messages
that say what happened and what to do about it."""

from __future__ import annotations

from agentic.errors import (
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
    ContextLengthError,
    RateLimitedError,
)
from agentic.inference import _vllm_wire as wire
from agentic.llama.models import ModelSpec


def unreachable(
    base_url: str, exc: Exception, model: str, spec: ModelSpec | None, port: int | None
) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"cannot reach the vLLM server at {base_url} ({type(exc).__name__}: {exc}). "
        f"{wire.serve_hint(model, spec, port)}"
    )


def no_answer(base_url: str, exc: Exception) -> BackendResponseError:
    return BackendResponseError(
        f"vLLM at {base_url} closed the connection without answering ({type(exc).__name__}: {exc})"
    )


_ASK_AGAIN = (
    "the answer is incomplete and is not asked for again automatically (part of it may have "
    "reached you already): send the request again; an agent turn continues with "
    "session.resume()"
)


def dropped(base_url: str, exc: Exception, chars: int) -> BackendResponseError:
    return BackendResponseError(
        f"the connection to vLLM at {base_url} broke after {chars} characters of output "
        f"({type(exc).__name__}: {exc}); {_ASK_AGAIN}"
    )


def timed_out(base_url: str, exc: Exception) -> BackendTimeoutError:
    return BackendTimeoutError(
        f"vLLM at {base_url} did not answer in time ({type(exc).__name__}); raise timeout= "
        "if the server is busy or generations are long"
    )


def malformed(base_url: str, data: str, exc: Exception) -> BackendResponseError:
    return BackendResponseError(
        f"vLLM at {base_url} sent a reply we cannot read ({type(exc).__name__}: {exc}): "
        f"{data[:200]!r}",
        status_code=200,
        body=wire.excerpt(data),
    )


def not_sse(base_url: str, status: int, exc: Exception) -> BackendResponseError:
    return BackendResponseError(
        f"vLLM at {base_url} did not answer with a server-sent event stream: {exc}",
        status_code=status,
    )


def unfinished(finish_reason: str | None) -> BackendResponseError:
    return BackendResponseError(
        f"vLLM ended the generation without finishing it (finish_reason={finish_reason!r}); "
        f"the server may have aborted the request (a restart or a pause); {_ASK_AGAIN}",
        status_code=200,
    )


def in_stream(data: str) -> BackendResponseError:
    message, error = wire.error_message(data)
    code = error.get("code")
    return BackendResponseError(
        f"vLLM reported an error mid-stream: {message}; {_ASK_AGAIN}",
        status_code=code if isinstance(code, int) else None,
        body=wire.excerpt(data),
    )


def rate_limited(
    base_url: str, status: int, attempts: int, message: str, raw: str
) -> RateLimitedError:
    return RateLimitedError(
        f"vLLM at {base_url} answered {status} to {attempts} attempts: {message}",
        status_code=status,
        body=wire.excerpt(raw),
    )


def context_length(
    model: str, message: str, prompt_tokens: int | None, limit: int | None, *, at_least: bool
) -> ContextLengthError:
    """``at_least``: vLLM stopped counting one token past the room left (it tokenizes no more
    than that), so the prompt has at least ``prompt_tokens`` tokens."""
    count = "?" if prompt_tokens is None else f"{'at least ' if at_least else ''}{prompt_tokens}"
    return ContextLengthError(
        f"the request does not fit the context of {model!r} ({count} prompt tokens, "
        f"max_model_len {'?' if limit is None else limit}); shorten the conversation or lower "
        f"max_tokens. vLLM said: {message}",
        prompt_tokens=prompt_tokens,
        max_model_len=limit,
    )


def too_long_to_count(model: str, message: str, limit: int | None) -> ContextLengthError:
    """vLLM's ``/tokenize`` refuses a text longer than the context instead of counting it."""
    name = repr(model) if model else "the model"
    context = "its context" if limit is None else f"its context of {limit} tokens"
    return ContextLengthError(
        f"the text for {name} is longer than {context}, so vLLM does not count it; shorten "
        f"the conversation. vLLM said: {message}",
        prompt_tokens=None,
        max_model_len=limit,
    )


def prompt_too_long(model: str, count: int, limit: int) -> ContextLengthError:
    return ContextLengthError(
        f"the prompt for {model!r} has {count} tokens, which does not fit its context of "
        f"{limit} tokens; shorten the conversation",
        prompt_tokens=count,
        max_model_len=limit,
    )


def status_error(
    base_url: str, status: int, message: str, raw: str, url: str
) -> BackendResponseError:
    if status in (401, 403):
        text = (
            f"vLLM at {base_url} refused the request ({status}: {message}); pass api_key= or "
            "set VLLM_API_KEY to the key the server was started with"
        )
    elif status == 404:
        text = (
            f"{url} answered 404 ({message}); base_url should be the server's OpenAI root, "
            f"ending in /v1 (it is {base_url!r})"
        )
    else:
        text = f"vLLM at {base_url} answered {status}: {message}"
    return BackendResponseError(text, status_code=status, body=wire.excerpt(raw))
