"""llama-agentic: agents for Llama 3.x models on vLLM.

The top level holds what most scripts need; the sub-namespaces hold the rest:
``agentic.agent`` (the typed steps and streamed events of a turn), ``agentic.tools``,
``agentic.memory``, ``agentic.shields``, ``agentic.llama`` (prompt format, tool calls,
tokenizer, model table), ``agentic.inference`` (backends), ``agentic.types``,
``agentic.errors`` and ``agentic.testing`` (test doubles).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time, see __getattr__
    from agentic._sync import run_sync
    from agentic.agent import (
        Agent,
        AgentConfig,
        PersistenceConfig,
        Session,
        Turn,
    )
    from agentic.config import Settings
    from agentic.errors import (
        AgenticError,
        AnswerFormatError,
        BackendResponseError,
        BackendTimeoutError,
        BackendUnavailableError,
        ConfigError,
        ContextLengthError,
        DocumentError,
        DocumentNotFoundError,
        EmbeddingMismatchError,
        InferenceError,
        MemoryBankError,
        MemoryStoreUnavailableError,
        MissingDependencyError,
        ModelNotFoundError,
        RateLimitedError,
        SearchError,
        SessionBusyError,
        SessionExistsError,
        SessionNotFoundError,
        SessionStateError,
        ToolArgumentsError,
        ToolError,
        TurnNotFoundError,
        UnknownModelError,
        UnsupportedFeatureError,
        UserError,
    )
    from agentic.inference import (
        Completion,
        InferenceBackend,
        InferenceRequest,
        TextDelta,
        TransformersLocal,
        VLLMServer,
        complete,
    )
    from agentic.llama import (
        format_dialog,
        get_tokenizer,
        parse_completion,
        render_prompt,
        resolve_model,
    )
    from agentic.tools import Tool, ToolContext, ToolRetry, tool
    from agentic.types import (
        AssistantMessage,
        BuiltinTool,
        Document,
        ImageContent,
        Message,
        SamplingParams,
        StopReason,
        SystemMessage,
        TextContent,
        ToolCall,
        ToolDefinition,
        ToolMessage,
        ToolPromptFormat,
        Usage,
        UserMessage,
    )

__version__ = "0.1.0"

# The names below are imported on first use, so `import agentic` (and the `agentic` command, whose
# Ctrl-C handling starts only once the package is imported) does not wait for LangGraph & co.
_EXPORTS: dict[str, str] = {
    "Agent": "agentic.agent",
    "AgentConfig": "agentic.agent",
    "AgenticError": "agentic.errors",
    "AnswerFormatError": "agentic.errors",
    "AssistantMessage": "agentic.types",
    "BackendResponseError": "agentic.errors",
    "BackendTimeoutError": "agentic.errors",
    "BackendUnavailableError": "agentic.errors",
    "BuiltinTool": "agentic.types",
    "Completion": "agentic.inference",
    "ConfigError": "agentic.errors",
    "ContextLengthError": "agentic.errors",
    "Document": "agentic.types",
    "DocumentError": "agentic.errors",
    "DocumentNotFoundError": "agentic.errors",
    "EmbeddingMismatchError": "agentic.errors",
    "ImageContent": "agentic.types",
    "InferenceBackend": "agentic.inference",
    "InferenceError": "agentic.errors",
    "InferenceRequest": "agentic.inference",
    "MemoryBankError": "agentic.errors",
    "MemoryStoreUnavailableError": "agentic.errors",
    "Message": "agentic.types",
    "MissingDependencyError": "agentic.errors",
    "ModelNotFoundError": "agentic.errors",
    "PersistenceConfig": "agentic.agent",
    "RateLimitedError": "agentic.errors",
    "SamplingParams": "agentic.types",
    "SearchError": "agentic.errors",
    "Session": "agentic.agent",
    "SessionBusyError": "agentic.errors",
    "SessionExistsError": "agentic.errors",
    "SessionNotFoundError": "agentic.errors",
    "SessionStateError": "agentic.errors",
    "Settings": "agentic.config",
    "StopReason": "agentic.types",
    "SystemMessage": "agentic.types",
    "TextContent": "agentic.types",
    "TextDelta": "agentic.inference",
    "Tool": "agentic.tools",
    "ToolArgumentsError": "agentic.errors",
    "ToolCall": "agentic.types",
    "ToolContext": "agentic.tools",
    "ToolDefinition": "agentic.types",
    "ToolError": "agentic.errors",
    "ToolMessage": "agentic.types",
    "ToolPromptFormat": "agentic.types",
    "ToolRetry": "agentic.tools",
    "TransformersLocal": "agentic.inference",
    "Turn": "agentic.agent",
    "TurnNotFoundError": "agentic.errors",
    "UnknownModelError": "agentic.errors",
    "UnsupportedFeatureError": "agentic.errors",
    "Usage": "agentic.types",
    "UserError": "agentic.errors",
    "UserMessage": "agentic.types",
    "VLLMServer": "agentic.inference",
    "complete": "agentic.inference",
    "format_dialog": "agentic.llama",
    "get_tokenizer": "agentic.llama",
    "parse_completion": "agentic.llama",
    "render_prompt": "agentic.llama",
    "resolve_model": "agentic.llama",
    "run_sync": "agentic._sync",
    "tool": "agentic.tools",
}


# a library leaves logging to the application: without its configuration, our warnings (a
# tool that failed, with its traceback) go nowhere instead of to Python's last-resort stderr
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Agent",
    "AgentConfig",
    "AgenticError",
    "AnswerFormatError",
    "AssistantMessage",
    "BackendResponseError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BuiltinTool",
    "Completion",
    "ConfigError",
    "ContextLengthError",
    "Document",
    "DocumentError",
    "DocumentNotFoundError",
    "EmbeddingMismatchError",
    "ImageContent",
    "InferenceBackend",
    "InferenceError",
    "InferenceRequest",
    "MemoryBankError",
    "MemoryStoreUnavailableError",
    "Message",
    "MissingDependencyError",
    "ModelNotFoundError",
    "PersistenceConfig",
    "RateLimitedError",
    "SamplingParams",
    "SearchError",
    "Session",
    "SessionBusyError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionStateError",
    "Settings",
    "StopReason",
    "SystemMessage",
    "TextContent",
    "TextDelta",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolContext",
    "ToolDefinition",
    "ToolError",
    "ToolMessage",
    "ToolPromptFormat",
    "ToolRetry",
    "TransformersLocal",
    "Turn",
    "TurnNotFoundError",
    "UnknownModelError",
    "UnsupportedFeatureError",
    "Usage",
    "UserError",
    "UserMessage",
    "VLLMServer",
    "__version__",
    "complete",
    "format_dialog",
    "get_tokenizer",
    "parse_completion",
    "render_prompt",
    "resolve_model",
    "run_sync",
    "tool",
]


if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays an error there

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'agentic' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
