"""The Llama 3 tokenizer against known ids and Meta's reference tokenizer (the oracle)."""

from __future__ import annotations

import functools
import importlib.resources
import random
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_models.llama3.tokenizer import Tokenizer as MetaTokenizer

from agentic.errors import ConfigError, UserError
from agentic.llama import tokenizer as tokmod
from agentic.llama.tokenizer import StreamDecoder, Tokenizer, _chunks, get_tokenizer
from agentic.llama.tokens import SPECIAL_TOKEN_IDS, SPECIAL_TOKENS

TOK = get_tokenizer()


@functools.cache
def oracle() -> Any:
    return MetaTokenizer.get_instance()


def packaged_file() -> Path:
    return Path(str(importlib.resources.files("llama_models").joinpath("llama3/tokenizer.model")))


# Text that exercises the split pattern: contractions, digits, punctuation runs, CR/LF, unicode
# spaces (U+00A0, U+3000, U+001C which Python but not tiktoken calls a space), emoji, CJK.
_ALPHABET = st.sampled_from(
    [
        *list("aZé日本🙂'sSdDtT0123456789 .,!?;:-_()[]{}<>|\"'\t\n\r\x0b\x0c"),
        "\xa0",
        "\u3000",
        "\u2028",
        "\x1c",
        "\x85",
        "\u0301",
        "’",
        "<|",
        "|>",
        " ",
    ]
)
_SPECIALS = st.sampled_from(["<|eot_id|>", "<|python_tag|>", "<|reserved_special_token_20|>"])
texts = st.lists(st.one_of(_ALPHABET, _SPECIALS, st.text(max_size=5)), max_size=40).map("".join)


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("hello world", [15339, 1917]),
        ("How many ‘r’s in strawberry?", [4438, 1690, 3451, 81, 753, 304, 73700, 30]),
        ("\n\n", [271]),
        ("user", [882]),
        ("system", [9125]),
        ("assistant", [78191]),
        ("", []),
    ],
)
def test_known_ids(text: str, ids: list[int]) -> None:
    assert TOK.encode(text) == ids
    assert TOK.decode(ids) == text
    assert TOK.count(text) == len(ids)


def test_vocabulary_and_named_ids() -> None:
    assert TOK.vocab_size == 128_256
    assert (TOK.bos_id, TOK.eos_id, TOK.eom_id, TOK.eot_id) == (128000, 128001, 128008, 128009)
    assert TOK.stop_ids == {128001, 128008, 128009}
    assert TOK.is_special(128000)
    assert TOK.is_special(128255)
    assert not TOK.is_special(127999)
    assert not TOK.is_special(128256)


def test_every_special_token_is_one_id() -> None:
    assert len(SPECIAL_TOKENS) == 256
    for name in SPECIAL_TOKENS:
        assert TOK.encode(name) == [SPECIAL_TOKEN_IDS[name]]
        assert TOK.decode([SPECIAL_TOKEN_IDS[name]]) == name
        plain = TOK.encode(name, allow_special=False)
        assert len(plain) > 1
        assert max(plain) < 128_000
        assert TOK.decode(plain) == name


def test_bos_and_specials_inside_text() -> None:
    ids = TOK.encode("<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", bos=True)
    assert ids == [128000, 128006, 882, 128007, 271, 6151, 128009]
    assert TOK.count("a<|eot_id|>") == 2
    # a string that only looks like a special token is ordinary text
    assert 128009 not in TOK.encode("<|eot_id |>")


@settings(max_examples=300, deadline=None)
@given(text=texts)
def test_matches_meta_tokenizer(text: str) -> None:
    expected = oracle().encode(text, bos=False, eos=False, allowed_special="all")
    assert TOK.encode(text) == expected
    assert TOK.encode(text, bos=True) == [128000, *expected]
    plain = oracle().encode(
        text, bos=False, eos=False, allowed_special=set(), disallowed_special=()
    )
    assert TOK.encode(text, allow_special=False) == plain
    assert TOK.decode(expected) == oracle().decode(expected)


def test_matches_meta_tokenizer_on_a_random_corpus() -> None:
    rng = random.Random(1234)
    pool = [
        "The", " quick", "brown", "fox's", "jumped", "12345", "3.14159", "naïve", "日本語",
        "🙂🙃", "\n", "\r\n", "\t", "  ", "!!!", "'ll", "'VE", "<|eom_id|>", "<|image|>",
        "{\"a\": [1, 2]}", "def f(x):\n    return x", "\u3000", "\xa0", "ü", "\u0301", "—",
    ]  # fmt: skip
    for _ in range(2000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 30)))
        assert TOK.encode(text) == oracle().encode(
            text, bos=False, eos=False, allowed_special="all"
        ), text


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_round_trip(text: str) -> None:
    assert TOK.decode(TOK.encode(text)) == text
    assert TOK.decode(TOK.encode(text, allow_special=False)) == text
    pieces = TOK.token_pieces(text)
    assert "".join(pieces) == text
    assert all(pieces)


def test_token_pieces_are_tokens_except_split_characters() -> None:
    assert TOK.token_pieces("hello world<|eot_id|>") == ["hello", " world", "<|eot_id|>"]
    pieces = TOK.token_pieces("日本語 🙂")
    assert "".join(pieces) == "日本語 🙂"
    assert "\ufffd" not in "".join(pieces)
    # 🙂 takes more than one token; its bytes are held back until the character is complete
    emoji_ids = TOK.encode("🙂")
    assert len(emoji_ids) > 1
    assert TOK.token_pieces("🙂") == ["🙂"]


def test_stream_decoder_holds_back_partial_characters() -> None:
    ids = TOK.encode("🙂")
    decoder = TOK.stream_decoder()
    assert isinstance(decoder, StreamDecoder)
    out = [decoder.feed(i) for i in ids]
    assert out[:-1] == [""] * (len(ids) - 1)
    assert out[-1] == "🙂"
    assert decoder.flush() == ""
    cut = TOK.stream_decoder()
    assert cut.feed(ids[0]) == ""
    assert cut.flush() == "\ufffd"


def test_decode_rejects_ids_outside_the_vocabulary() -> None:
    with pytest.raises(UserError, match="128256"):
        TOK.decode([15339, 128256])
    with pytest.raises(UserError, match="-1"):
        TOK.decode([-1])
    assert TOK.decode([]) == ""


def _words(n: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    pool = ["alpha", "beta", "12", "ünï", "日本語", "x.y", "\n", "\t", " ", ",", "'s"]
    return " ".join(rng.choice(pool) for _ in range(n))


def test_long_text_encodes_exactly_as_uncut() -> None:
    text = _words(250_000)
    assert len(text) > tokmod.MAX_CHUNK_CHARS * 2
    chunks = list(_chunks(text))
    assert len(chunks) >= 3
    assert all(len(c) <= tokmod.MAX_CHUNK_CHARS for c in chunks)
    # tiktoken itself, fed the whole text at once, is the reference for the exact ids
    assert TOK.encode(text) == oracle().model.encode_ordinary(text)


def test_long_runs_are_cut_and_round_trip() -> None:
    text = "a" * 60_000 + " b" + " " * 70_000 + "c<|eot_id|>" + "x" * 30_000
    chunks = list(_chunks(text.split("<|")[0]))
    runs = re.compile(r"[^ ]+| +")
    assert max(len(r) for c in chunks for r in runs.findall(c)) <= tokmod.MAX_RUN_CHARS
    ids = TOK.encode(text)
    assert 128009 in ids
    assert TOK.decode(ids) == text


_SPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)
}


def _safe(text: str, cut: int) -> bool:
    """Where the tokenizer may cut without changing tokens (see ``tokenizer._SAFE_CUT``)."""
    before, after = text[cut - 1], text[cut]
    if before not in _SPACE and after in _SPACE - {"\r", "\n"}:
        return True
    return before.isascii() and before.isalnum() and after in "\r\n"


@settings(max_examples=400, deadline=None)
@given(text=texts, max_chunk=st.integers(1, 30))
def test_safe_cuts_do_not_change_tokens(text: str, max_chunk: int) -> None:
    chunks = list(_chunks(text, max_chunk=max_chunk, max_run=10_000))
    assert "".join(chunks) == text
    assert all(0 < len(c) <= max_chunk for c in chunks) or text == ""
    start = 0
    for chunk in chunks[:-1]:
        cut = start + len(chunk)
        if not _safe(text, cut):  # a hard cut only where the window had no safe place
            assert len(chunk) == max_chunk
            assert not any(_safe(text, p) for p in range(start + 1, cut))
        start = cut
    if all(_safe(text, sum(map(len, chunks[: i + 1]))) for i in range(len(chunks) - 1)):
        joined = [t for c in chunks for t in TOK.encode(c, allow_special=False)]
        assert joined == TOK.encode(text, allow_special=False)


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.sampled_from(["ab", "12", "日本", "x.", "'s", "é"]), max_size=30))
def test_cuts_between_words_and_lines_keep_tokens(words: list[str]) -> None:
    # every separator is a safe place (a newline only after ASCII letters or digits), and every
    # 8-character window holds one, so the cut text must encode exactly as the whole
    text = "".join(
        w + ("\n" if i % 3 == 0 and w in ("ab", "12") else " ") for i, w in enumerate(words)
    )
    chunks = list(_chunks(text, max_chunk=8, max_run=10_000))
    joined = [t for c in chunks for t in TOK.encode(c)]
    assert joined == TOK.encode(text)


def test_cuts_inside_runs_when_there_is_no_safe_place() -> None:
    text = "abcdefghij" * 3 + "\n" * 25
    chunks = list(_chunks(text, max_chunk=8, max_run=6))
    assert "".join(chunks) == text
    assert all(len(c) <= 8 for c in chunks)
    assert max(len(r) for c in chunks for r in re.findall(r"\S+|\s+", c)) <= 6


def test_loads_an_explicit_rank_file() -> None:
    tok = Tokenizer(packaged_file())
    assert tok.encode("hello world") == [15339, 1917]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("IQ== 0\nnot-base64!! 1\n", "not a tiktoken rank line"),
        ("IQ== zero\n", "not a tiktoken rank line"),
        ("IQ== 0\nIg== 1\n\n", "expected ranks 0..127999, found 2 tokens"),
    ],
)
def test_bad_rank_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "tokenizer.model"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        Tokenizer(path)


def test_missing_rank_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read tokenizer file"):
        Tokenizer(tmp_path / "nope.model")


def test_missing_llama_models_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_package(anchor: str) -> Any:
        raise ModuleNotFoundError(f"No module named {anchor!r}")

    monkeypatch.setattr(importlib.resources, "files", no_package)
    with pytest.raises(ConfigError, match="pip install 'llama-models"):
        Tokenizer()


def test_package_without_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.resources, "files", lambda anchor: tmp_path)
    with pytest.raises(ConfigError, match=r"no llama3/tokenizer\.model"):
        Tokenizer()


def test_get_tokenizer_builds_one_instance_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Tokenizer] = []
    gate = threading.Barrier(8)

    class Counting(Tokenizer):
        def __init__(self) -> None:
            built.append(self)
            super().__init__()

    monkeypatch.setattr(tokmod, "_INSTANCE", None)
    monkeypatch.setattr(tokmod, "Tokenizer", Counting)
    results: list[Tokenizer] = []

    def worker() -> None:
        gate.wait()
        results.append(get_tokenizer())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1
    assert all(r is built[0] for r in results)
    assert get_tokenizer() is built[0]
