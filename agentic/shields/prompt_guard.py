"""Prompt Guard in-process: jailbreaks in what the user writes, injections in third-party text.

Runs Meta's Prompt Guard classifier with transformers from a local checkpoint directory:
Prompt Guard 1 (``meta-llama/Prompt-Guard-86M``: BENIGN / INJECTION / JAILBREAK) or Prompt
Guard 2 (``meta-llama/Llama-Prompt-Guard-2-86M`` / ``-22M``: BENIGN / MALICIOUS), told apart by the
checkpoint's own label config. Text longer than the model's 512-token window is scored window by
window (overlapping by ``stride`` tokens) and the worst window counts, so an injection at the end
of a long page is not cut off. Scores follow ``reference/shields.md`` §6: user input uses the
jailbreak score (PG1) or the malicious score (PG2); third-party text (tool results, retrieved
chunks) uses injection + jailbreak (PG1) or malicious (PG2).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from agentic.errors import ConfigError, MissingDependencyError
from agentic.shields.base import ScanVerdict, ShieldStage, Violation
from agentic.types import Message, content_text

__all__ = ["PromptGuard", "PromptGuardVerdict"]

_Mode = Literal["direct", "indirect"]
_LABEL_SETS: Mapping[frozenset[str], int] = {
    frozenset({"benign", "injection", "jailbreak"}): 1,
    frozenset({"benign", "malicious"}): 2,
}


class PromptGuardVerdict(ScanVerdict):
    """A Prompt Guard verdict, with the probabilities of the window that decided it."""

    version: int
    """1 (benign / injection / jailbreak) or 2 (benign / malicious)."""
    scores: dict[str, float] = Field(default_factory=dict)
    """Label probabilities in the deciding window."""
    windows: int = 1
    window: int = 0
    """Index of the deciding window (0 is the start of the text)."""


@dataclass(frozen=True)
class _Loaded:
    tokenizer: Any
    model: Any
    labels: dict[str, int]
    """Lower-case label name -> logit index."""
    version: int


def _import_transformers() -> tuple[Any, Any, Any]:
    try:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
    except ImportError as exc:  # the [local] extra
        raise MissingDependencyError("transformers", "local") from exc
    return torch, AutoTokenizer, AutoModelForSequenceClassification


def _labels(id2label: Mapping[Any, str], path: Path) -> tuple[dict[str, int], int]:
    labels = {str(name).lower(): int(index) for index, name in id2label.items()}
    version = _LABEL_SETS.get(frozenset(labels))
    if version is None:
        raise ConfigError(
            f"{path} is not a Prompt Guard checkpoint: its labels are {sorted(labels)}, expected "
            "BENIGN/INJECTION/JAILBREAK (Prompt Guard 1) or BENIGN/MALICIOUS (Prompt Guard 2)"
        )
    return labels, version


def _load(path: Path, device: str) -> _Loaded:
    torch, auto_tokenizer, auto_model = _import_transformers()
    if not path.is_dir():
        raise ConfigError(
            f"Prompt Guard checkpoint {str(path)!r} is not a directory. Download it first, e.g. "
            "`hf download meta-llama/Llama-Prompt-Guard-2-86M --local-dir DIR`, and pass DIR"
        )
    try:
        tokenizer = auto_tokenizer.from_pretrained(path, local_files_only=True)
        model = auto_model.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load a Prompt Guard checkpoint from {path}: {exc}") from exc
    if not tokenizer.is_fast:
        raise ConfigError(f"{path} needs a fast tokenizer (tokenizer.json) for windowing")
    labels, version = _labels(model.config.id2label, path)
    try:
        model.to(torch.device(device))
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"cannot run Prompt Guard on device {device!r}: {exc}") from exc
    model.eval()
    return _Loaded(tokenizer, model, labels, version)


def _check_numbers(
    window: int, stride: int, batch_size: int, temperature: float, thresholds: Sequence[float]
) -> None:
    if window < 8:
        raise ConfigError(f"window must be at least 8 tokens (got {window})")
    if not 0 <= stride < window - 2:
        raise ConfigError(f"stride must be in 0..{window - 3} (window {window}; got {stride})")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1 (got {batch_size})")
    if temperature <= 0:
        raise ConfigError(f"temperature must be positive (got {temperature})")
    if any(not 0 < t <= 1 for t in thresholds):
        raise ConfigError(f"thresholds must be in (0, 1] (got {list(thresholds)})")


class PromptGuard:
    """Prompt Guard 1 or 2 as a :class:`~agentic.shields.Shield` and a text scanner.

    ``check`` judges the last message (the user's input) with the jailbreak / malicious score
    against ``jailbreak_threshold``; ``scan`` judges untrusted texts (tool results, retrieved
    chunks) with the injection / malicious score against ``injection_threshold``. Loading
    blocks for as long as reading the weights takes: in async code use :meth:`open`.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        jailbreak_threshold: float = 0.9,
        injection_threshold: float = 0.9,
        window: int = 512,
        stride: int = 64,
        batch_size: int = 16,
        device: str = "cpu",
        temperature: float = 1.0,
        name: str = "prompt_guard",
    ) -> None:
        thresholds = (jailbreak_threshold, injection_threshold)
        _check_numbers(window, stride, batch_size, temperature, thresholds)
        self.path = Path(model_path)
        self.jailbreak_threshold = jailbreak_threshold
        self.injection_threshold = injection_threshold
        self.window = window
        self.stride = stride
        self.batch_size = batch_size
        self.temperature = temperature
        self._name = name
        self._loaded = _load(self.path, device)
        self._lock = threading.Lock()

    @classmethod
    async def open(cls, model_path: str | Path, **kwargs: Any) -> PromptGuard:
        """Load in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(cls, model_path, **kwargs)

    def __repr__(self) -> str:
        return f"PromptGuard({str(self.path)!r}, version={self.version})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int:
        """1 for Prompt Guard (86M), 2 for Llama Prompt Guard 2."""
        return self._loaded.version

    async def check(self, messages: Sequence[Message], *, stage: ShieldStage) -> Violation | None:
        """Judge the last message for a jailbreak (PG1) or an attack (PG2)."""
        if not messages:
            raise ConfigError("Prompt Guard needs a message to judge")
        [verdict] = await self._judge([content_text(messages[-1].content)], "direct")
        if not verdict.flagged:
            return None
        return Violation(
            shield=self.name,
            categories=list(verdict.categories),
            message=(
                f"Prompt Guard scored the {messages[-1].role} message {verdict.score:.3f} for "
                f"{verdict.categories[0]} (threshold {self.jailbreak_threshold})"
            ),
            metadata={
                "score": verdict.score,
                "scores": verdict.scores,
                "window": verdict.window,
                "windows": verdict.windows,
                "version": verdict.version,
            },
        )

    async def scan(self, texts: Sequence[str]) -> list[PromptGuardVerdict]:
        """One verdict per third-party text (indirect injection), in order."""
        return await self._judge(list(texts), "indirect")

    async def _judge(self, texts: list[str], mode: _Mode) -> list[PromptGuardVerdict]:
        if not texts:
            return []
        probabilities = await asyncio.to_thread(self._window_probabilities, texts)
        return [self._verdict(rows, mode) for rows in probabilities]

    # -- scoring (in a worker thread) -------------------------------------------------------

    def _window_probabilities(self, texts: list[str]) -> list[list[list[float]]]:
        """Per text, per window, the label probabilities (one call at a time: the fast
        tokenizer's truncation settings are shared state, and torch already uses every core)."""
        with self._lock:
            return self._window_probabilities_locked(texts)

    def _window_probabilities_locked(self, texts: list[str]) -> list[list[list[float]]]:
        tokenizer = self._loaded.tokenizer
        encoded = tokenizer(
            texts,
            truncation=True,
            max_length=self.window,
            stride=self.stride,
            return_overflowing_tokens=True,
        )
        windows: list[list[int]] = encoded["input_ids"]
        owners: list[int] = encoded["overflow_to_sample_mapping"]
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # little padding
        rows: list[list[float]] = [[] for _ in windows]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for index, probs in zip(batch, self._forward([windows[i] for i in batch]), strict=True):
                rows[index] = probs
        per_text: list[list[list[float]]] = [[] for _ in texts]
        for index, owner in enumerate(owners):
            per_text[owner].append(rows[index])
        return per_text

    def _forward(self, windows: list[list[int]]) -> list[list[float]]:
        torch, _, _ = _import_transformers()
        padded = self._loaded.tokenizer.pad({"input_ids": windows}, return_tensors="pt")
        model = self._loaded.model
        with torch.inference_mode():
            logits = model(
                input_ids=padded["input_ids"].to(model.device),
                attention_mask=padded["attention_mask"].to(model.device),
            ).logits
            probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        result: list[list[float]] = probs.cpu().tolist()
        return result

    def _score(self, probs: Sequence[float], mode: _Mode) -> tuple[float, str]:
        """The deciding score of one window, and what it found."""
        labels = self._loaded.labels
        if self.version == 2:
            return probs[labels["malicious"]], "malicious"
        jailbreak = probs[labels["jailbreak"]]
        if mode == "direct":
            return jailbreak, "jailbreak"
        injection = probs[labels["injection"]]
        return injection + jailbreak, "jailbreak" if jailbreak >= injection else "injection"

    def _verdict(self, rows: list[list[float]], mode: _Mode) -> PromptGuardVerdict:
        scored = [self._score(probs, mode) for probs in rows]
        best = max(range(len(rows)), key=lambda i: scored[i][0])
        score, found = scored[best]
        threshold = self.jailbreak_threshold if mode == "direct" else self.injection_threshold
        flagged = score >= threshold
        names = sorted(self._loaded.labels, key=self._loaded.labels.__getitem__)
        return PromptGuardVerdict(
            scanner=self.name,
            flagged=flagged,
            score=score,
            categories=[found] if flagged else [],
            version=self.version,
            scores={name: rows[best][self._loaded.labels[name]] for name in names},
            windows=len(rows),
            window=best,
        )
