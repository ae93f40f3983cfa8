"""Shields: checks on what goes into and comes out of the model.

:class:`LlamaGuard` judges messages with a Llama Guard 3 model on an inference backend;
:class:`PromptGuard` runs Meta's Prompt Guard classifier in-process on user input (jailbreaks) and,
as a :class:`TextScanner`, on tool results and retrieved chunks (indirect injection);
:class:`CodeShield` scans code with Meta's CodeShield before it runs or reaches the user.
"""

from __future__ import annotations

from agentic.shields.base import (
    DEFAULT_REFUSAL,
    ScanVerdict,
    Shield,
    ShieldStage,
    TextScanner,
    Violation,
    screen,
)
from agentic.shields.code_shield import (
    CODESHIELD_VERSION,
    SEMGREP_VERSION,
    CodeBlock,
    CodeIssue,
    CodeLanguage,
    CodeSeverity,
    CodeShield,
    CodeVerdict,
    extract_code,
)
from agentic.shields.guard_output import GuardError, GuardVerdict, parse_guard_output
from agentic.shields.guard_prompt import (
    DEFAULT_GUARD_MODEL,
    GUARD_CATEGORY_NAMES,
    GuardFormat,
    GuardPrompt,
    GuardRole,
    guard_categories,
    guard_format_of,
    guard_spec,
    render_guard_prompt,
)
from agentic.shields.llama_guard import LlamaGuard
from agentic.shields.prompt_guard import PromptGuard, PromptGuardVerdict

# plain sorted order (tests/unit/core/test_exported_members.py); ruff's isort-style order would
# move the constants ahead of CodeBlock...CodeVerdict
__all__ = [  # noqa: RUF022
    "CODESHIELD_VERSION",
    "CodeBlock",
    "CodeIssue",
    "CodeLanguage",
    "CodeSeverity",
    "CodeShield",
    "CodeVerdict",
    "DEFAULT_GUARD_MODEL",
    "DEFAULT_REFUSAL",
    "GUARD_CATEGORY_NAMES",
    "GuardError",
    "GuardFormat",
    "GuardPrompt",
    "GuardRole",
    "GuardVerdict",
    "LlamaGuard",
    "PromptGuard",
    "PromptGuardVerdict",
    "SEMGREP_VERSION",
    "ScanVerdict",
    "Shield",
    "ShieldStage",
    "TextScanner",
    "Violation",
    "extract_code",
    "guard_categories",
    "guard_format_of",
    "guard_spec",
    "parse_guard_output",
    "render_guard_prompt",
    "screen",
]
