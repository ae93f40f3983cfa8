"""The shield interface: judge the conversation on its way into or out of the model.

Real shields (Llama Guard, Prompt Guard, the code shield) implement :class:`Shield`; the
orchestrator only needs ``name`` and ``check``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from agentic.types import Message

__all__ = ["DEFAULT_REFUSAL", "Shield", "ShieldStage", "Violation"]

ShieldStage = Literal["input", "output"]

DEFAULT_REFUSAL = "I can't answer that. Can I help with something else?"


class Violation(BaseModel):
    """Why a shield blocked the conversation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shield: str
    categories: list[str] = Field(default_factory=list)
    """Category codes (``S1``...), or a shield-specific label."""
    message: str = ""
    """What the shield said about it (kept in the step, never shown to the model)."""
    metadata: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class Shield(Protocol):
    """Checks messages; returns a :class:`Violation` to block, ``None`` to let them through.

    ``messages`` is the conversation the check is about, ending with the message to judge (the
    user's new message at the ``input`` stage, the agent's answer at the ``output`` stage).
    """

    @property
    def name(self) -> str: ...

    async def check(
        self, messages: Sequence[Message], *, stage: ShieldStage
    ) -> Violation | None: ...
