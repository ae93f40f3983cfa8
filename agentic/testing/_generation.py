"""Replaying scripted model text the way vLLM's engine would have emitted it.

The scripted text is split into token pieces (special tokens always whole), then run through the
same stop logic vLLM applies, so finish_reason, stop_reason, the streamed deltas and the final
text come out as a real server would send them. Followed, in vLLM's source:
``vllm/v1/core/sched/utils.py`` (``check_stop``: EOS, then ``stop_token_ids``, then length),
``vllm/sampling_params.py`` (``update_from_generation_config``: the model's other EOS ids join
``stop_token_ids``), ``vllm/v1/engine/detokenizer.py`` (the stop token is not detokenized unless
``include_stop_str_in_output``; stop strings are checked on new text, streamed text holds back
``max(len(stop)) - 1`` characters) and ``vllm/engine/output_processor/stop_checker.py``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from agentic.llama.tokenizer import get_tokenizer
from agentic.llama.tokens import END_OF_MESSAGE, END_OF_TEXT, END_OF_TURN, SPECIAL_TOKEN_IDS

__all__ = [
    "EOS_ID",
    "GENERATION_CONFIG_STOP_IDS",
    "Generation",
    "Piece",
    "StopConfig",
    "count_tokens",
    "generate",
    "pieces_from_chunks",
    "pieces_from_text",
]

EOS_ID = SPECIAL_TOKEN_IDS[END_OF_TURN]
"""The tokenizer EOS of Llama 3.x Instruct models (``<|eot_id|>``)."""
GENERATION_CONFIG_STOP_IDS = frozenset(
    {SPECIAL_TOKEN_IDS[END_OF_TEXT], SPECIAL_TOKEN_IDS[END_OF_MESSAGE]}
)
"""The other ``eos_token_id`` entries of Llama 3.x ``generation_config.json``."""
_MODEL_STOP_IDS = GENERATION_CONFIG_STOP_IDS | {EOS_ID}
_SPECIAL_RE = re.compile(r"<\|[A-Za-z0-9_]+\|>")


class Piece(NamedTuple):
    """One generated token: its text, its id when known, and whether it is a special token."""

    text: str
    token_id: int | None
    special: bool


def _split_specials(text: str) -> list[str]:
    """Text cut around known special tokens, which come out as whole items."""
    out: list[str] = []
    pos = 0
    for match in _SPECIAL_RE.finditer(text):
        if match.group() not in SPECIAL_TOKEN_IDS:
            continue
        if match.start() > pos:
            out.append(text[pos : match.start()])
        out.append(match.group())
        pos = match.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def _special(text: str) -> Piece:
    return Piece(text, SPECIAL_TOKEN_IDS[text], True)


def _with_eos(pieces: list[Piece]) -> tuple[Piece, ...]:
    """Scripted text that does not end on a stop token ends on ``<|eot_id|>``, as a model would."""
    if not pieces or pieces[-1].token_id not in _MODEL_STOP_IDS:
        pieces.append(_special(END_OF_TURN))
    return tuple(pieces)


@functools.lru_cache(maxsize=4096)
def pieces_from_text(text: str) -> tuple[Piece, ...]:
    """The tokens a model emitted to produce ``text``, one piece each (cached: scripts repeat).

    A token that ends inside a multi-byte character has text ``""`` until the token completing
    the character, as vLLM's incremental detokenizer streams it.
    """
    tok = get_tokenizer()
    decoder = tok.stream_decoder()
    pieces = [Piece(decoder.feed(t), t, tok.is_special(t)) for t in tok.encode(text)]
    return _with_eos(pieces)


def pieces_from_chunks(chunks: Sequence[str]) -> tuple[Piece, ...]:
    """Explicit stream deltas, one token each; special tokens inside a chunk are cut out."""
    pieces: list[Piece] = []
    for chunk in chunks:
        for part in _split_specials(chunk):
            pieces.append(_special(part) if part in SPECIAL_TOKEN_IDS else Piece(part, None, False))
    return _with_eos(pieces)


def count_tokens(text: str) -> int:
    """Number of tokens of ``text`` (special-token strings count as one, no BOS added)."""
    return get_tokenizer().count(text)


@dataclass(frozen=True, slots=True)
class StopConfig:
    """The request's stopping and detokenization settings."""

    max_tokens: int
    stop: tuple[str, ...] = ()
    stop_token_ids: frozenset[int] = frozenset()
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True

    @property
    def all_stop_ids(self) -> frozenset[int]:
        if self.ignore_eos:
            return self.stop_token_ids
        return self.stop_token_ids | GENERATION_CONFIG_STOP_IDS


@dataclass(frozen=True, slots=True)
class Generation:
    """What the engine produced for one request."""

    deltas: tuple[str, ...]
    """The text of each streamed chunk, one per generated token."""
    text: str
    """The final output text (what a non-streaming response carries)."""
    raw_text: str
    """The generated text with special tokens, the terminating stop token left out."""
    finish_reason: str
    stop_reason: int | str | None
    completion_tokens: int


def _check_stop_strings(
    output: str, new_chars: int, stops: tuple[str, ...], include: bool
) -> tuple[str, int] | None:
    """vLLM's StopChecker.check_stop_strings: (matched stop, truncate_to or -1)."""
    if not new_chars:
        return None
    for stop in stops:
        index = output.find(stop, 1 - new_chars - len(stop))
        if index == -1:
            continue
        if include:
            index += len(stop)
            if index >= len(output):
                return stop, -1
        return stop, index
    return None


def _token_stop(piece: Piece, cfg: StopConfig, count: int) -> tuple[str, int | None, bool] | None:
    """check_stop for one token: (finish_reason, stop_reason, stop_terminated) or None."""
    if not cfg.ignore_eos and piece.token_id == EOS_ID:
        return "stop", None, True
    if piece.token_id is not None and piece.token_id in cfg.all_stop_ids:
        return "stop", piece.token_id, True
    if count >= cfg.max_tokens:
        return "length", None, False
    return None


class _Detokenizer:
    """Output text as vLLM streams it: stop strings found on the new text, and the last
    ``max(len(stop)) - 1`` characters held back until they cannot start a stop string.

    Keeps only the held-back text and a short search tail, so long replies cost linear time.
    """

    def __init__(self, cfg: StopConfig) -> None:
        self.cfg = cfg
        self.keep = max((len(s) for s in cfg.stop), default=1) - 1
        self.hold = 0 if cfg.include_stop_str_in_output else self.keep
        self.pending = ""
        self.tail = ""

    def add(self, new: str, check: bool) -> str | None:
        """Append new text; returns the stop string it completed, if any (text truncated).

        ``check`` is False for the text of a stop token, which vLLM does not search.
        """
        match = None
        if self.cfg.stop and check:
            window = self.tail + new
            include = self.cfg.include_stop_str_in_output
            match = _check_stop_strings(window, len(new), self.cfg.stop, include)
            if match is not None and match[1] != -1:
                drop = len(window) - match[1]  # at most what is held back
                self.pending = (self.pending + new)[: len(self.pending) + len(new) - drop]
                return match[0]
            self.tail = window[len(window) - self.keep :] if self.keep else ""
        self.pending += new
        return None if match is None else match[0]

    def delta(self, last: bool) -> str:
        """The text to stream now."""
        cut = len(self.pending) if last else len(self.pending) - self.hold
        if cut <= 0:
            return ""
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out


def generate(pieces: Sequence[Piece], cfg: StopConfig) -> Generation:
    """Run the scripted tokens through vLLM's stop logic and incremental detokenization."""
    detok = _Detokenizer(cfg)
    raw: list[str] = []
    deltas: list[str] = []
    finish: tuple[str, int | str | None] = ("length", None)
    count = 0
    for piece in pieces:
        count += 1
        stopped = _token_stop(piece, cfg, count)
        terminated = stopped is not None and stopped[2]
        if not terminated:
            raw.append(piece.text)
        new = ""
        if not terminated or cfg.include_stop_str_in_output:
            new = "" if piece.special and cfg.skip_special_tokens else piece.text
        stop_string = detok.add(new, check=not terminated)
        if stop_string is not None:
            stopped, finish = ("stop", None, False), ("stop", stop_string)
        elif stopped is not None:
            finish = (stopped[0], stopped[1])
        last = stopped is not None or count == len(pieces)
        deltas.append(detok.delta(last))
        if last:
            break
    text = "".join(deltas)
    return Generation(tuple(deltas), text, "".join(raw), finish[0], finish[1], count)
