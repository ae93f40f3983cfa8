"""AgentConfig: everything that defines an agent, validated when it is read.

A config is plain data (loadable from YAML). Tools, shields and memory banks are given either
as objects or by name; names are resolved against what is passed to :class:`~agentic.Agent`
when the agent is built, so a YAML file can name the Python tools of the script that loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentic.agent.guarding import CodeScanner
from agentic.errors import ConfigError
from agentic.memory.base import Retriever
from agentic.shields.base import DEFAULT_REFUSAL, Shield, TextScanner
from agentic.tools.base import Tool
from agentic.types import (
    SamplingParams,
    ToolDefinition,
    ToolPromptFormat,
    _Settings,
    validation_message,
)

__all__ = ["AgentConfig", "PersistenceConfig"]

DEFAULT_INSTRUCTIONS = "You are a helpful assistant."


class PersistenceConfig(_Settings):
    """Where sessions live.

    ``sqlite`` (default): a file under the home directory (``path`` to choose another).
    ``postgres``: a shared database at ``url`` (extra ``postgres``). ``memory``: this process
    only. ``durability``: ``sync`` writes every step before the next one starts (a killed
    process loses no finished step), ``async`` writes in the background, ``exit`` only when
    the turn stops (completes, waits for client tools, fails or is abandoned). By default
    ``sync`` for a database and ``exit`` for ``memory``, which a killed process loses
    anyway: a stopped turn resumes from its last finished step either way.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    _what: ClassVar[str] = "persistence config"

    backend: Literal["sqlite", "postgres", "memory"] = "sqlite"
    path: Path | None = None
    url: str | None = None
    durability: Literal["sync", "async", "exit"] | None = None

    @property
    def step_durability(self) -> Literal["sync", "async", "exit"]:
        """The durability in effect (``durability``, else the backend's default)."""
        if self.durability is not None:
            return self.durability
        return "exit" if self.backend == "memory" else "sync"

    def model_post_init(self, context: Any, /) -> None:
        if self.backend == "postgres" and not self.url:
            raise ConfigError(
                "persistence backend 'postgres' needs url: "
                "postgresql://user:password@host:5432/dbname"
            )


class AgentConfig(_Settings):
    """The definition of an agent. Validated twice: field by field here, as a whole when an
    :class:`~agentic.Agent` is built from it (tool names, model capabilities...)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)
    _what: ClassVar[str] = "agent config"

    name: str = "agent"
    model: str
    """A model id or alias from the capability table (``agentic models`` lists them)."""
    instructions: str = DEFAULT_INSTRUCTIONS
    sampling: SamplingParams = SamplingParams()
    tools: list[str | Tool] = Field(default_factory=list)
    """Tools the server runs: objects, or names of tools passed to ``Agent(tools=...)``."""
    client_tools: list[ToolDefinition] = Field(default_factory=list)
    """Tools the caller runs: the turn stops for their results (``Session.resume``)."""
    tool_choice: str = "auto"
    """``auto``, ``required``, ``none`` or a tool name; required and named choices hold in a
    turn until the model made a call (its answer is made to start one), then the model is
    free to answer."""
    tool_prompt_format: ToolPromptFormat | None = None
    input_shields: list[str | Shield] = Field(default_factory=list)
    """Judge the user's message; they run while the first inference already streams, and
    its tokens are held until they pass."""
    output_shields: list[str | Shield] = Field(default_factory=list)
    """Judge the agent's text before any of it is released (see ``output_shield_chunk``)."""
    data_shields: list[str | TextScanner] = Field(default_factory=list)
    """Scanners (e.g. Prompt Guard) of tool results and retrieved chunks: flagged text is
    withheld from the model and replaced by a short notice."""
    code_shields: list[str | CodeScanner] = Field(default_factory=list)
    """Scanners (e.g. CodeShield) of code-interpreter code before it runs: insecure code is
    not run, and the model is told why."""
    shield_timeout: float = Field(default=30.0, gt=0)
    """Seconds one shield call may take."""
    shield_failure: Literal["block", "allow"] = "block"
    """What a shield that times out or fails means: ``block`` (fail closed: a violation, or
    withheld content) or ``allow`` (recorded in the step, and the turn goes on)."""
    output_shield_chunk: int | None = Field(default=None, ge=1)
    """``None``: the whole answer is checked before any of it is released. ``N``: it is
    released N sentences at a time, each chunk checked with everything released before it."""
    memory_banks: list[str | Retriever] = Field(default_factory=list)
    retrieval_limit: int = Field(default=5, ge=1)
    """Chunks retrieved per turn at most (across all banks)."""
    retrieval_token_budget: int = Field(default=2048, ge=1)
    """Tokens of retrieved context a turn may add to the prompt: best chunks first."""
    inline_document_tokens: int = Field(default=1024, ge=0)
    """Documents attached to a turn up to this many tokens go into the prompt whole; longer
    ones are chunked into the session's document bank and retrieved from."""
    max_infer_iters: int = Field(default=10, ge=1)
    response_format: type[BaseModel] | dict[str, Any] | None = None
    """A pydantic model or a JSON schema the final answer must follow."""
    persistence: PersistenceConfig = PersistenceConfig()
    tool_timeout: float | None = Field(default=60.0, gt=0)
    max_tool_output_chars: int = Field(default=20_000, ge=100)
    context_length: int | None = Field(default=None, ge=256)
    """The model's context window; by default what the server reports, else the model's own."""
    response_token_reserve: int = Field(default=1024, ge=1)
    """Tokens kept free for the answer when ``sampling.max_tokens`` is not set."""
    refusal_message: str = DEFAULT_REFUSAL

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("tool_choice must be auto, required, none or a tool name")
        return value

    @field_validator("response_format", mode="before")
    @classmethod
    def _response_format(cls, value: Any) -> Any:
        if value is None or isinstance(value, dict):
            return value
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value
        raise ValueError("response_format must be a pydantic model class or a JSON schema dict")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentConfig:
        """A config from plain data, with a readable error when it is invalid."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(f"invalid agent config: {validation_message(exc, cls)}") from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> AgentConfig:
        """Read a config from a YAML file (tools, shields and banks given by name)."""
        import yaml

        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read agent config {str(p)!r}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"agent config {str(p)!r} is not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"agent config {str(p)!r} must be a mapping of settings")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(
                f"invalid agent config {str(p)!r}: {validation_message(exc, cls)}"
            ) from exc
