"""The text the model reads after a cell, and the file names going in and out."""

from __future__ import annotations

import pytest

from agentic.tools.code_interpreter import CellResult
from agentic.tools.code_interpreter.result import (
    artifact_mime,
    clip,
    document_filename,
    fit_streams,
    human_size,
    valid_artifact_name,
)
from agentic.types import Document


def test_meta_format_for_success_and_failure() -> None:
    # llama-models prompt_templates/tool_response.py: no newline inside the brackets
    assert (
        CellResult(success=True, stdout="541\n").render(100) == "completed\n[stdout]541\n[/stdout]"
    )
    assert CellResult(success=True).render(100) == "completed"
    failed = CellResult(success=False, stdout="a", stderr="Traceback...\nNameError: x\n")
    assert failed.render(100) == (
        "failed\n[stdout]a[/stdout]\n[stderr]Traceback...\nNameError: x\n[/stderr]"
    )


def test_files_skips_and_reset_notes_follow_the_streams() -> None:
    result = CellResult(
        success=True,
        stdout="ok\n",
        files=["figure_1.png", "outputs/summary.csv"],
        skipped=["outputs/big.bin (12.0 MiB, over the 10 MiB cap)"],
        not_loaded=["huge.csv (40.0 MiB, over the 32 MiB cap)"],
        reset=True,
        reset_reason="the interpreter was idle for more than 600 s",
    )
    assert result.render(100).split("\n")[3:] == [
        "Files: figure_1.png, outputs/summary.csv",
        "Not returned: outputs/big.bin (12.0 MiB, over the 10 MiB cap)",
        "Not loaded: huge.csv (40.0 MiB, over the 32 MiB cap)",
        "Note: state was reset (the interpreter was idle for more than 600 s): variables, "
        "imports and files from earlier calls are gone.",
    ]
    bare = CellResult(success=False, reset=True).render(100)
    assert bare.endswith(
        "\nNote: state was reset: variables, imports and files from earlier calls are gone."
    )


def test_long_lists_of_skipped_files_are_summarised() -> None:
    result = CellResult(success=True, skipped=[f"f{i} (a symbolic link)" for i in range(25)])
    assert result.render(100).endswith("f19 (a symbolic link); and 5 more")


def test_clip_keeps_head_and_tail() -> None:
    assert clip("short", 10) == "short"
    cut = clip("a" * 50 + "b" * 50, 20)
    assert cut == "a" * 10 + "\n…[80 characters cut]…\n" + "b" * 10


def test_streams_share_the_cap_and_stderr_keeps_half() -> None:
    assert fit_streams("out", "err", 10) == ("out", "err")
    out, err = fit_streams("o" * 1000, "e" * 1000, 200)
    assert out.startswith("o" * 50)
    assert err.startswith("e" * 50)
    assert len(out) < 140
    assert len(err) < 140
    out, err = fit_streams("o" * 1000, "short error", 200)
    assert err == "short error"
    assert "characters cut" in out
    text = CellResult(success=True, stdout="x" * 100_000).render(1000)
    assert len(text) < 1100


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("figure_1.png", True),
        ("figure_12.png", True),
        ("outputs/summary.csv", True),
        ("outputs/sub/dir/a b.txt", True),
        ("figure_x.png", False),
        ("outputs/", False),
        ("outputs/../etc/passwd", False),
        ("outputs/./a", False),
        ("outputs//a", False),
        ("/etc/passwd", False),
        ("data.csv", False),
        ("outputs/a\nb", False),
        ("outputs/a\\b", False),
        ("outputs/" + "a" * 600, False),
    ],
)
def test_artifact_names(name: str, ok: bool) -> None:
    assert valid_artifact_name(name) is ok


def test_artifact_mime_types() -> None:
    assert artifact_mime("figure_1.png") == "image/png"
    assert artifact_mime("outputs/a.csv") == "text/csv"
    assert artifact_mime("outputs/blob") == "application/octet-stream"


@pytest.mark.parametrize(
    ("name", "mime", "expected"),
    [
        ("data.csv", "text/csv", "data.csv"),
        ("../../etc/passwd", "text/plain", "passwd"),
        ("C:\\Users\\me\\report.txt", "text/plain", "report.txt"),
        ("my data (v2).csv", "text/csv", "my_data_v2_.csv"),
        (".bashrc", "text/plain", "bashrc"),
        ("outputs", "text/plain", "outputs_"),
        ("", "text/csv", "document_3.csv"),
        ("...", "text/plain", "document_3.txt"),
        ("x" * 300, "text/plain", "x" * 100),
    ],
)
def test_document_file_names_are_safe(name: str, mime: str, expected: str) -> None:
    doc = Document(content="x", name=name, mime_type=mime)
    assert document_filename(doc, 2) == expected


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1000, "1000 bytes"),
        (1536, "1.5 KiB"),
        (10 << 20, "10.0 MiB"),
        (3 << 30, "3072.0 MiB"),
    ],
)
def test_sizes_read_naturally(size: int, text: str) -> None:
    assert human_size(size) == text
