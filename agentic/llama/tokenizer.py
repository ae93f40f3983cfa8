"""The Llama 3 tokenizer: tiktoken BPE over Meta's 128,000 ranks plus the 256 special tokens.

Every Llama 3.x model shares it. The rank file ships in Meta's ``llama-models`` package
(``llama_models/llama3/tokenizer.model``: one base64 token and its rank per line); we read it and
build the tiktoken encoding with the Llama 3 split pattern ourselves.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import importlib.resources
import re
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import tiktoken

from agentic.errors import ConfigError, UserError
from agentic.llama.tokens import (
    BEGIN_OF_TEXT,
    END_OF_MESSAGE,
    END_OF_TEXT,
    END_OF_TURN,
    NUM_BASE_TOKENS,
    SPECIAL_TOKEN_IDS,
)

__all__ = ["StreamDecoder", "Tokenizer", "get_tokenizer"]

SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""How Llama 3 pre-splits text before BPE (the tiktoken/cl100k family pattern, digits by 3)."""

MAX_CHUNK_CHARS = 400_000
"""Longest text handed to tiktoken in one call (older tiktoken builds panic beyond this)."""
MAX_RUN_CHARS = 25_000
"""Longest run of whitespace or non-whitespace handed to tiktoken (BPE is quadratic in a run)."""

# Unicode White_Space, which is what ``\s`` means in tiktoken's (Rust) regex; Python's ``\s``
# also matches U+001C..U+001F, so it must not be used for the split decisions below.
_WS = "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_HWS = _WS.replace("\\n", "").replace("\\r", "")
# Cuts that never change the pre-split pieces: no piece that contains a non-space character
# continues with a space other than CR/LF, and letter or digit pieces never take a CR/LF either.
_SAFE_CUT = re.compile(f"[^{_WS}][{_HWS}]|[A-Za-z0-9][\r\n]")
_TAIL_SEARCH = 8_192


def _long_runs(max_run: int) -> re.Pattern[str]:
    # Anchored at the start of a run by the lookbehind, so scanning stays linear.
    return re.compile(
        f"(?<![^{_WS}])[^{_WS}]{{{max_run + 1},}}|(?<![{_WS}])[{_WS}]{{{max_run + 1},}}"
    )


_LONG_RUN = _long_runs(MAX_RUN_CHARS)


def _run_cuts(text: str, max_run: int) -> Iterator[int]:
    """Hard cut positions inside runs longer than ``max_run``, then the end of the text."""
    pattern = _LONG_RUN if max_run == MAX_RUN_CHARS else _long_runs(max_run)
    for match in pattern.finditer(text):
        yield from range(match.start() + max_run, match.end(), max_run)
    yield len(text)


def _last_safe_cut(text: str, start: int, limit: int) -> int:
    """The last piece-preserving cut in ``(start, limit]``, or ``limit`` if there is none."""
    for lo in (max(start, limit - _TAIL_SEARCH), start):
        last = deque(_SAFE_CUT.finditer(text, lo, limit + 1), maxlen=1)
        if last:
            return last[0].start() + 1
    return limit


def _chunks(
    text: str, max_chunk: int = MAX_CHUNK_CHARS, max_run: int = MAX_RUN_CHARS
) -> Iterator[str]:
    """Cut ``text`` into pieces tiktoken handles safely, encoding exactly as the whole would.

    Cuts go where the split pattern already separates pieces, so the tokens are the same as for
    the uncut text; only runs of more than ``max_run`` (non-)space characters get hard cuts.
    """
    if len(text) <= min(max_chunk, max_run):
        yield text
        return
    start = 0
    for end in _run_cuts(text, max_run):
        while end - start > max_chunk:
            cut = _last_safe_cut(text, start, start + max_chunk)
            yield text[start:cut]
            start = cut
        yield text[start:end]
        start = end


def _read_ranks(text: str, source: str) -> dict[bytes, int]:
    """Parse a tiktoken rank file: ``<base64 token> <rank>`` per line."""
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        token, _, rank = line.partition(" ")
        try:
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(
                f"{source}:{lineno}: not a tiktoken rank line: {line[:80]!r}"
            ) from exc
    if sorted(ranks.values()) != list(range(NUM_BASE_TOKENS)):
        raise ConfigError(
            f"{source} is not the Llama 3 tokenizer: expected ranks 0..{NUM_BASE_TOKENS - 1}, "
            f"found {len(ranks)} tokens"
        )
    return ranks


def _packaged_ranks() -> tuple[str, str]:
    """The text and location of ``tokenizer.model`` in the installed ``llama_models`` package."""
    try:
        resource = importlib.resources.files("llama_models").joinpath("llama3", "tokenizer.model")
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "the Llama 3 tokenizer file ships in Meta's 'llama-models' package, which is not "
            "installed; reinstall llama-agentic or run: pip install 'llama-models>=0.3,<0.4'"
        ) from exc
    try:
        return resource.read_text(encoding="ascii"), str(resource)
    except OSError as exc:
        raise ConfigError(
            f"the installed 'llama-models' package has no llama3/tokenizer.model ({exc}); "
            "reinstall it: pip install --force-reinstall 'llama-models>=0.3,<0.4'"
        ) from exc


class StreamDecoder:
    """Turns token ids into text one at a time, holding back bytes of unfinished characters.

    A multi-byte UTF-8 character can be split over several tokens; each call to :meth:`feed`
    returns only complete characters, so streamed pieces concatenate to :meth:`Tokenizer.decode`.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """The text that ``token_id`` completes (may be empty)."""
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        """Whatever is held back, with unfinished characters replaced by U+FFFD."""
        return self._utf8.decode(b"", final=True)


class Tokenizer:
    """The Llama 3 tokenizer (128,256 ids). Thread-safe; use :func:`get_tokenizer` to share one."""

    def __init__(self, model_file: str | Path | None = None) -> None:
        """Load ranks from ``model_file`` (a tiktoken rank file), by default Meta's packaged one."""
        if model_file is None:
            text, source = _packaged_ranks()
        else:
            source = str(model_file)
            try:
                text = Path(model_file).read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read tokenizer file {source!r}: {exc}") from exc
        self.special_tokens: Mapping[str, int] = dict(SPECIAL_TOKEN_IDS)
        self._encoding = tiktoken.Encoding(
            name="llama3",
            pat_str=SPLIT_PATTERN,
            mergeable_ranks=_read_ranks(text, source),
            special_tokens=dict(self.special_tokens),
        )
        self._special_re = re.compile("|".join(map(re.escape, self.special_tokens)))
        self.vocab_size: int = NUM_BASE_TOKENS + len(self.special_tokens)
        self.bos_id = self.special_tokens[BEGIN_OF_TEXT]
        self.eos_id = self.special_tokens[END_OF_TEXT]
        self.eom_id = self.special_tokens[END_OF_MESSAGE]
        self.eot_id = self.special_tokens[END_OF_TURN]
        self.stop_ids: frozenset[int] = frozenset({self.eos_id, self.eom_id, self.eot_id})
        """Ids that end a generation: ``<|end_of_text|>``, ``<|eom_id|>``, ``<|eot_id|>``."""

    def encode(self, text: str, *, bos: bool = False, allow_special: bool = True) -> list[int]:
        """Token ids of ``text``; special-token strings become their ids when ``allow_special``.

        With ``allow_special=False`` they are encoded as the ordinary characters they are made of.
        ``bos`` prepends ``<|begin_of_text|>``.
        """
        ids = [self.bos_id] if bos else []
        parts = self._split_special(text) if allow_special and "<|" in text else [text]
        for index, part in enumerate(parts):
            if index % 2:
                ids.append(self.special_tokens[part])
            elif part:
                for chunk in _chunks(part):
                    ids.extend(self._encoding.encode_ordinary(chunk))
        return ids

    def _split_special(self, text: str) -> list[str]:
        """``[text, special, text, special, ..., text]``."""
        parts: list[str] = []
        pos = 0
        for match in self._special_re.finditer(text):
            parts += [text[pos : match.start()], match.group()]
            pos = match.end()
        parts.append(text[pos:])
        return parts

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, special tokens written out; invalid UTF-8 becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The raw bytes of ``ids`` (a token can end in the middle of a UTF-8 character)."""
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise UserError(
                f"token id {bad} is outside the Llama 3 vocabulary (0..{self.vocab_size - 1})"
            )
        return self._encoding.decode_bytes(list(ids))

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token."""
        return self.decode_bytes((token_id,))

    def count(self, text: str) -> int:
        """How many tokens ``text`` takes (special-token strings count as one)."""
        return len(self.encode(text))

    def token_pieces(self, text: str) -> list[str]:
        """``text`` cut into one string per token, to stream it as a model would.

        Tokens that end inside a multi-byte character are merged with the ones completing it, so
        every piece is valid text and the pieces concatenate to ``text``.
        """
        decoder = self.stream_decoder()
        return [piece for token in self.encode(text) if (piece := decoder.feed(token))]

    def stream_decoder(self) -> StreamDecoder:
        """A fresh incremental decoder for one stream of ids."""
        return StreamDecoder(self)

    def is_special(self, token_id: int) -> bool:
        """Whether ``token_id`` is one of the 256 special tokens."""
        return NUM_BASE_TOKENS <= token_id < self.vocab_size


_LOCK = threading.Lock()
_INSTANCE: Tokenizer | None = None


def get_tokenizer() -> Tokenizer:
    """The shared :class:`Tokenizer`, loaded once (about 0.2 s) on first use."""
    global _INSTANCE
    if _INSTANCE is None:
        with _LOCK:
            if _INSTANCE is None:
                _INSTANCE = Tokenizer()
    return _INSTANCE
