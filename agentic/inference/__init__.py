"""Inference backends behind one protocol: vLLM over HTTP, transformers in-process, replay."""

from __future__ import annotations

from agentic.inference.base import (
    Completion,
    InferenceBackend,
    InferenceRequest,
    TextDelta,
    Timings,
    complete,
)
from agentic.inference.replay import RecordReplayBackend, ReplayMode, request_key
from agentic.inference.transformers_local import (
    TokenLogitsProcessor,
    TransformersLocal,
    logit_bias,
)
from agentic.inference.vllm_server import ServedModel, VLLMServer

__all__ = [
    "Completion",
    "InferenceBackend",
    "InferenceRequest",
    "RecordReplayBackend",
    "ReplayMode",
    "ServedModel",
    "TextDelta",
    "Timings",
    "TokenLogitsProcessor",
    "TransformersLocal",
    "VLLMServer",
    "complete",
    "logit_bias",
    "request_key",
]
