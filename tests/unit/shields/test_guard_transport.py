"""The raw-prompt-with-images request 11B-Vision needs, on every backend: sent, keyed or refused."""

from __future__ import annotations

import pytest

from agentic.errors import UnsupportedFeatureError
from agentic.inference import _vllm_wire as wire
from agentic.inference.base import InferenceRequest
from agentic.inference.replay import request_key
from agentic.inference.transformers_local import _check_request
from agentic.inference.vllm_server import VLLMServer
from agentic.types import ImageContent, SamplingParams

IMAGE = ImageContent.from_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
PROMPT = "<|begin_of_text|>...<|image|> Task: ..."


def test_replay_keys_tell_requests_with_and_without_the_image_apart() -> None:
    plain = InferenceRequest(model="m", prompt=PROMPT)
    assert request_key(plain) != request_key(
        InferenceRequest(model="m", prompt=PROMPT, images=[IMAGE])
    )
    assert request_key(plain) == request_key(InferenceRequest(model="m", prompt=PROMPT, images=()))


def test_the_local_text_backend_refuses_an_image_it_cannot_see() -> None:
    with pytest.raises(UnsupportedFeatureError, match="text models only"):
        _check_request(InferenceRequest(model="m", prompt=PROMPT, images=[IMAGE]))


def test_the_chat_body_carries_the_prompt_verbatim_with_its_image() -> None:
    body = wire.raw_prompt_chat_body(
        "guard",
        PROMPT,
        [IMAGE],
        SamplingParams(temperature=0.0, max_tokens=7),
        response_format=None,
        stream=True,
    )
    assert body["messages"][0]["content"][-1] == {"type": "text", "text": PROMPT}
    assert body["max_completion_tokens"] == 7
    assert body["skip_special_tokens"] is False
    assert body["stream_options"] == {"include_usage": True}


async def test_vllm_refuses_an_image_for_a_text_guard_before_any_request() -> None:
    async with VLLMServer("http://127.0.0.1:9/v1", max_retries=0) as backend:
        request = InferenceRequest(
            model="meta-llama/Llama-Guard-3-8B", prompt=PROMPT, images=[IMAGE]
        )
        with pytest.raises(UnsupportedFeatureError, match="has no vision"):
            await backend.complete(request)
