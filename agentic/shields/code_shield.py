"""CodeShield: Meta's insecure-code detector on code before it runs or reaches the user.

Wraps the ``codeshield`` package (PurpleLlama's CodeShield: regex rules plus semgrep rules, in
its fast "codeshield" rule set) and fixes what it does quietly (``reference/shields.md`` §7):

- it swallows scanner errors and reports "nothing found"; here a failed semgrep run, an
  unreadable rule file or output that is not semgrep's JSON is an error (fail closed);
- its semgrep layer depends on the semgrep version (with 1.182 it scans no file at all), so the
  first scan is preceded by a self-check on known-insecure samples, one per layer, and a layer
  that finds nothing stops the shield with a :class:`ConfigError` rather than scanning nothing;
- semgrep's severities arrive as raw strings, so its ERROR rules never blocked; here every
  issue's severity is normalised and ``block_at`` decides what blocks and what only warns.

Install: ``pip install --no-deps codeshield==1.0.1 semgrep==1.90.0`` (see the module constants).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from agentic.errors import ConfigError, MissingDependencyError
from agentic.shields.base import ShieldStage, Violation
from agentic.types import AssistantMessage, BuiltinTool, Message, content_text

__all__ = [
    "CODESHIELD_VERSION",
    "SEMGREP_VERSION",
    "CodeBlock",
    "CodeIssue",
    "CodeLanguage",
    "CodeSeverity",
    "CodeShield",
    "CodeVerdict",
    "extract_code",
]

CODESHIELD_VERSION = "1.0.1"
SEMGREP_VERSION = "1.90.0"
"""The versions the self-check samples were verified with; others must pass the self-check."""

CodeLanguage = Literal[
    "c",
    "cpp",
    "csharp",
    "hack",
    "java",
    "javascript",
    "kotlin",
    "objective_c",
    "objective_cpp",
    "php",
    "python",
    "ruby",
    "rust",
    "swift",
    "xml",
]
CodeSeverity = Literal["advice", "warning", "error"]
Treatment = Literal["block", "warn", "ignore"]

_LANGUAGES: frozenset[str] = frozenset(get_args(CodeLanguage))
_RANK: Mapping[CodeSeverity, int] = {"advice": 0, "warning": 1, "error": 2}
_FENCE_NAMES: Mapping[str, CodeLanguage] = {
    "py": "python",
    "python3": "python",
    "py3": "python",
    "js": "javascript",
    "jsx": "javascript",
    "node": "javascript",
    "h": "c",
    "c++": "cpp",
    "cc": "cpp",
    "cxx": "cpp",
    "hpp": "cpp",
    "cs": "csharp",
    "c#": "csharp",
    "kt": "kotlin",
    "rs": "rust",
    "rb": "ruby",
    "objc": "objective_c",
    "objective-c": "objective_c",
    "objectivec": "objective_c",
}
_LOGGER = "codeshield.insecure_code_detector"
_CANARIES: tuple[tuple[str, str], ...] = (
    ("regex", "import hashlib\n\ndigest = hashlib.md5(b'data').hexdigest()\n"),
    ("semgrep", "import subprocess\n\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n"),
)


class CodeIssue(BaseModel):
    """One insecure pattern found."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    cwe: str
    severity: CodeSeverity
    pattern_id: str
    line: int | None = None
    analyzer: Literal["regex", "semgrep"]
    language: str


class CodeVerdict(BaseModel):
    """What a scan found and what to do: ``block`` (any issue at ``block_at`` or worse),
    ``warn`` (issues below it) or ``ignore`` (none)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    language: str | None
    """The language scanned as; ``None`` when it was unknown and every language was tried."""
    issues: list[CodeIssue] = Field(default_factory=list)
    treatment: Treatment = "ignore"

    @property
    def blocked(self) -> bool:
        return self.treatment == "block"


@dataclass(frozen=True)
class CodeBlock:
    """Code found in a message: a fenced block, or a code-interpreter call."""

    code: str
    language: CodeLanguage | None
    source: Literal["fence", "tool_call"]


def language_of(name: str | None) -> CodeLanguage | None:
    """A fence hint or language name as a :data:`CodeLanguage`; ``None`` if unsupported."""
    key = (name or "").strip().lower()
    if key in _LANGUAGES:
        return key  # type: ignore[return-value]  # checked against the Literal's values
    return _FENCE_NAMES.get(key)


def _fenced(text: str) -> list[CodeBlock]:
    """Fenced blocks (an unclosed fence runs to the end: truncated code is still scanned)."""
    blocks: list[CodeBlock] = []
    lines: list[str] | None = None
    hint: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if lines is None:
            if stripped.startswith("```"):
                lines, hint = [], stripped[3:].strip().split(" ")[0]
        elif stripped.startswith("```"):
            blocks.append(CodeBlock("\n".join(lines) + "\n", language_of(hint), "fence"))
            lines = None
        else:
            lines.append(line)
    if lines:
        blocks.append(CodeBlock("\n".join(lines) + "\n", language_of(hint), "fence"))
    return blocks


def extract_code(message: Message) -> list[CodeBlock]:
    """The code in a message: its fenced blocks, then its code-interpreter calls (Python)."""
    blocks = _fenced(content_text(message.content))
    if isinstance(message, AssistantMessage):
        for call in message.tool_calls:
            if call.builtin is BuiltinTool.code_interpreter:
                code = str(call.arguments.get("code", ""))
                blocks.append(CodeBlock(code, "python", "tool_call"))
    return blocks


# -- the codeshield package ----------------------------------------------------------------


_PROBLEMS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "codeshield_problems", default=None
)


class _ProblemLog(logging.Handler):
    """Turns what the detector only logs (a failed semgrep run, bad rules) into scan errors."""

    def emit(self, record: logging.LogRecord) -> None:
        problems = _PROBLEMS.get()
        message = record.getMessage()
        if problems is not None and (
            record.levelno >= logging.ERROR or message.startswith("Could not parse JSON")
        ):
            problems.append(message)


@dataclass(frozen=True)
class _Detector:
    analyze: Any
    languages: ModuleType
    usecase: Any


def _import_detector() -> _Detector:
    try:
        with warnings.catch_warnings():  # its semgrep lookup uses a deprecated importlib API
            warnings.simplefilter("ignore", DeprecationWarning)
            from codeshield.insecure_code_detector import insecure_code_detector, languages
            from codeshield.insecure_code_detector.usecases import UseCase
    except ImportError as exc:
        raise MissingDependencyError("codeshield", "codeshield") from exc
    except Exception as exc:  # its import links osemgrep next to semgrep-core, or fails to find it
        raise ConfigError(
            f"codeshield could not set up semgrep ({type(exc).__name__}: {exc}); install "
            f"semgrep=={SEMGREP_VERSION} where codeshield can write next to its semgrep-core"
        ) from exc
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(h, _ProblemLog) for h in logger.handlers):
        logger.addHandler(_ProblemLog(logging.WARNING))
    return _Detector(insecure_code_detector.analyze, languages, UseCase.CODESHIELD)


def _installed_semgrep() -> str:
    try:
        import semgrep
    except ImportError:
        return "none"
    return str(getattr(semgrep, "__VERSION__", "unknown"))


def _severity(value: Any) -> CodeSeverity:
    """The detector's severities: its enum for regex rules, raw semgrep strings otherwise."""
    name = str(getattr(value, "value", value)).lower()
    if name == "error":
        return "error"
    if name in ("advice", "info", "disabled"):
        return "advice"
    return "warning"  # "warning", and anything unexpected: never quieter than a warning


def _issue(raw: Any, language: str) -> CodeIssue:
    pattern = str(raw.pattern_id or raw.name or raw.cwe_id or "unknown")
    analyzer = str(getattr(raw.analyzer, "value", raw.analyzer) or "regex")
    return CodeIssue(
        description=str(raw.description or ""),
        cwe=str(raw.cwe_id or ""),
        severity=_severity(raw.severity),
        pattern_id=pattern.rsplit(".", 1)[-1],  # semgrep prefixes the rule file's dotted path
        line=raw.line if isinstance(raw.line, int) else None,
        analyzer="semgrep" if analyzer == "semgrep" else "regex",
        language=language,
    )


async def _analyze(detector: _Detector, code: str, language: str) -> list[CodeIssue]:
    """One language, through a private file (the detector leaks its own temp files)."""
    lang = detector.languages.Language(language)
    suffix = detector.languages.get_file_extension(lang)
    with tempfile.TemporaryDirectory(prefix="codeshield-") as folder:
        path = Path(folder) / f"snippet{suffix}"
        path.write_text(code, encoding="utf-8")
        found = await detector.analyze(lang, code, path=path, usecase=detector.usecase)
    return [_issue(raw, language) for raw in found]


def _scan_in_thread(detector: _Detector, code: str, languages: Sequence[str]) -> list[CodeIssue]:
    """Run the detector on its own event loop: it blocks (regexes, files) while it works."""
    problems: list[str] = []
    _PROBLEMS.set(problems)

    async def run() -> list[list[CodeIssue]]:
        return await asyncio.gather(*(_analyze(detector, code, lang) for lang in languages))

    results = asyncio.run(run())
    if problems:
        raise ConfigError(f"CodeShield could not scan the code: {'; '.join(problems)}")
    return [issue for issues in results for issue in issues]


class CodeShield:
    """Scans code for insecure patterns: a :class:`~agentic.shields.Shield` over the code in the
    judged message, and :meth:`scan_code` for the code interpreter's gate.

    Issues at ``block_at`` severity or worse block (``"warning"`` by default: every finding of
    the Python rules is a warning); lesser ones only warn. Code whose language is unknown is
    scanned as every language CodeShield supports. :meth:`start` runs the self-check; the first
    scan runs it if nobody did.
    """

    def __init__(
        self,
        *,
        block_at: CodeSeverity = "warning",
        name: str = "code_shield",
        refusal: str | None = None,
    ) -> None:
        if block_at not in _RANK:
            raise ConfigError(f"block_at must be one of {sorted(_RANK)} (got {block_at!r})")
        self.block_at = block_at
        self.refusal = refusal
        self._name = name
        self._detector: _Detector | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"CodeShield(block_at={self.block_at!r})"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        """Import the scanner and prove each layer finds a known-insecure sample, once.

        :class:`MissingDependencyError` if codeshield is not installed; :class:`ConfigError` if
        a layer finds nothing (a semgrep that silently scans nothing, missing rules).
        """
        async with self._lock:
            if self._detector is not None:
                return
            detector = await asyncio.to_thread(_import_detector)
            for layer, sample in _CANARIES:
                issues = await asyncio.to_thread(_scan_in_thread, detector, sample, ["python"])
                if not any(i.analyzer == layer for i in issues):
                    raise ConfigError(
                        f"CodeShield's {layer} layer found nothing in a known-insecure sample, "
                        f"so it would pass insecure code. Install the verified versions: pip "
                        f"install --no-deps codeshield=={CODESHIELD_VERSION} "
                        f"semgrep=={SEMGREP_VERSION} (semgrep {_installed_semgrep()} is installed)"
                    )
            self._detector = detector

    async def scan_code(self, code: str, language: str | None = "python") -> CodeVerdict:
        """Scan one piece of code; ``language`` is a name or fence hint (``None``: unknown)."""
        await self.start()
        assert self._detector is not None
        lang = language_of(language)  # None for a language CodeShield has no rules for
        languages = [lang] if lang else self._all_languages()
        issues = await asyncio.to_thread(_scan_in_thread, self._detector, code, languages)
        return CodeVerdict(language=lang, issues=issues, treatment=self._treatment(issues))

    async def scan_message(self, message: Message) -> list[CodeVerdict]:
        """A verdict for each piece of code in a message (none when it holds no code)."""
        blocks = extract_code(message)
        return list(await asyncio.gather(*(self.scan_code(b.code, b.language) for b in blocks)))

    async def check(self, messages: Sequence[Message], *, stage: ShieldStage) -> Violation | None:
        """Block when the code in the judged (last) message has an issue at ``block_at``."""
        if not messages:
            raise ConfigError("CodeShield needs a message to judge")
        verdicts = await self.scan_message(messages[-1])
        blocking = [i for v in verdicts for i in v.issues if self._blocks(i)]
        if not blocking:
            return None
        found = "; ".join(f"{i.cwe} {i.description} (line {i.line})" for i in blocking)
        return Violation(
            shield=self.name,
            categories=sorted({i.pattern_id for i in blocking}),
            message=f"CodeShield found insecure code: {found}",
            metadata={"issues": [i.model_dump() for v in verdicts for i in v.issues]},
            refusal=self.refusal,
        )

    def _all_languages(self) -> list[str]:
        assert self._detector is not None
        return [str(x.value) for x in self._detector.languages.get_supported_languages()]

    def _blocks(self, issue: CodeIssue) -> bool:
        return _RANK[issue.severity] >= _RANK[self.block_at]

    def _treatment(self, issues: Sequence[CodeIssue]) -> Treatment:
        if any(self._blocks(i) for i in issues):
            return "block"
        return "warn" if issues else "ignore"
