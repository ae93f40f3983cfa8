"""What the model reads after a cell, and the names of files going in and out of the sandbox.

The text follows the format Llama 3.1 was trained on for code-interpreter results (Meta's
llama-models, ``models/llama3/prompt_templates/tool_response.py``): ``completed`` or
``failed``, then ``[stdout]...[/stdout]`` and ``[stderr]...[/stderr]`` for the streams that
are not empty (:func:`agentic.llama.system_prompts.format_code_interpreter_result`). After it
come a ``Files:`` line naming the figures and files returned as artifacts (their bytes never
enter the prompt), the files that were not returned and why, and a note when the session's
state was reset.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Final

from agentic.llama.system_prompts import format_code_interpreter_result
from agentic.types import Document

__all__ = [
    "CellResult",
    "artifact_mime",
    "clip",
    "document_filename",
    "human_size",
    "valid_artifact_name",
]

_FIGURE: Final = re.compile(r"^figure_[0-9]{1,9}\.png$")
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME: Final = 100
_MAX_LISTED: Final = 20


def human_size(size: float) -> str:
    """``2.5 MiB``, ``12.0 KiB``, ``800 bytes``: sizes as a reader wants them."""
    if size < 1024:
        return f"{size:g} bytes"
    for unit in ("KiB", "MiB"):
        size /= 1024
        if size < 1024 or unit == "MiB":
            break
    return f"{size:.1f} {unit}"


def clip(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, keeping its head and tail around a marker."""
    if len(text) <= limit:
        return text
    half = max(limit // 2, 0)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n…[{cut} characters cut]…\n{text[len(text) - half :]}"


def fit_streams(stdout: str, stderr: str, limit: int) -> tuple[str, str]:
    """Both streams within ``limit`` characters together; stderr keeps at least half if long."""
    if len(stdout) + len(stderr) <= limit:
        return stdout, stderr
    err_budget = min(len(stderr), max(limit // 2, limit - len(stdout)))
    return clip(stdout, limit - err_budget), clip(stderr, err_budget)


@dataclass(slots=True)
class CellResult:
    """The outcome of one call, ready to be rendered for the model."""

    success: bool
    stdout: str = ""
    stderr: str = ""
    files: list[str] = field(default_factory=list)
    """Names of the artifacts returned (figures and output files)."""
    skipped: list[str] = field(default_factory=list)
    """Files that were not returned, each with the reason."""
    not_loaded: list[str] = field(default_factory=list)
    """Attached documents that could not be copied in, each with the reason."""
    reset: bool = False
    """The session's state was reset before or during this call."""
    reset_reason: str = ""
    """Why, when it happened before the call (a failure during the call is on stderr)."""

    def render(self, max_chars: int) -> str:
        """The text for the ``ipython`` message, streams cut to ``max_chars`` together."""
        stdout, stderr = fit_streams(self.stdout, self.stderr, max_chars)
        text = format_code_interpreter_result(success=self.success, stdout=stdout, stderr=stderr)
        if self.files:
            text += "\nFiles: " + ", ".join(self.files)
        text += _listing("Not returned", self.skipped) + _listing("Not loaded", self.not_loaded)
        if self.reset:
            why = f" ({self.reset_reason})" if self.reset_reason else ""
            text += (
                f"\nNote: state was reset{why}: variables, imports and files from earlier "
                "calls are gone."
            )
        return text


def _listing(title: str, items: list[str]) -> str:
    if not items:
        return ""
    shown = items[:_MAX_LISTED]
    more = len(items) - len(shown)
    return f"\n{title}: " + "; ".join(shown) + (f"; and {more} more" if more else "")


def valid_artifact_name(name: str) -> bool:
    """A figure name the worker makes, or a plain relative path under ``outputs/``."""
    if _FIGURE.match(name):
        return True
    if not name.startswith("outputs/") or len(name) > 512 or not name.isprintable():
        return False
    parts = name.split("/")
    return not any(p in ("..", ".", "") for p in parts) and "\\" not in name


def artifact_mime(name: str) -> str:
    """The MIME type for an artifact's file name."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def document_filename(doc: Document, index: int) -> str:
    """A safe file name in ``/work`` for an attached document (``data.csv`` stays ``data.csv``)."""
    base = PurePosixPath(doc.name.replace("\\", "/")).name if doc.name else ""
    clean = _UNSAFE.sub("_", base).lstrip(".-")[:_MAX_NAME]
    if clean == "outputs":
        clean = "outputs_"
    if not clean:
        ext = mimetypes.guess_extension(doc.mime_type, strict=False) or ".txt"
        clean = f"document_{index + 1}{ext}"
    return clean
