"""llama-agentic: agents for Llama 3.x models on vLLM.

The top level holds what most scripts need; the sub-namespaces hold the rest:
``agentic.llama`` (prompt format, tool calls, tokenizer, model table), ``agentic.inference``
(backends), ``agentic.types``, ``agentic.errors`` and ``agentic.testing`` (test doubles).
"""

from __future__ import annotations

import logging

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
