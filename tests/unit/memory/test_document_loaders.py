"""Text out of plain text, Markdown, HTML and PDF, with a clear error for anything else."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfWriter

from agentic.errors import DocumentError
from agentic.memory import extract_text, html_to_text, read_file, text_of

DATA = Path(__file__).parents[2] / "data" / "memory"


def make_pdf(pages: list[str]) -> bytes:
    """A minimal PDF with one Helvetica text block per page (ASCII text)."""
    objects: list[bytes] = []
    kids = []
    for i, text in enumerate(pages):
        page_no, content_no = 4 + 2 * i, 5 + 2 * i
        kids.append(f"{page_no} 0 R")
        lines = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").split("\n")
        body = "BT /F1 11 Tf 14 TL 56 780 Td " + " ".join(f"({x}) Tj T*" for x in lines) + " ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources "
            f"<< /Font << /F1 3 0 R >> >> /Contents {content_no} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(body)} >>\nstream\n{body}\nendstream".encode())
    head = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for no, obj in enumerate(head + objects, 1):
        offsets.append(len(out))
        out += f"{no} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(offsets) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer\n<< /Size {len(offsets) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def blank_pdf(password: str | None = None) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=842)
    if password:
        writer.encrypt(password)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def test_html_keeps_visible_text_in_blocks() -> None:
    text, title = html_to_text(
        "<html><head><title>Hinges &amp; slides</title><style>p{color:red}</style></head>"
        "<body><script>var x = 1;</script><h1>Catalogue</h1><p>Brass&nbsp;hinge,"
        "   <b>35&nbsp;mm</b>.</p><ul>\n <li>one</li>\n <li>two</li></ul>line<br>break<br/>"
        "again"
        "<noscript>enable JS</noscript></body></html>"
    )
    assert title == "Hinges & slides"
    assert text == "Catalogue\n\nBrass hinge, 35 mm.\n\none\ntwo\nline\nbreak\nagain"


def test_the_corpus_html_has_no_markup_left() -> None:
    loaded = read_file(DATA / "corpus" / "dna.html")
    assert loaded.mime_type == "text/html"
    assert loaded.title == "The structure of DNA"
    assert "<" not in loaded.text
    assert "drawing on X-ray images made by Rosalind Franklin." in loaded.text


def test_pdf_pages_are_joined() -> None:
    loaded = extract_text(make_pdf(["First page (one).", "Second page."]), None, source="a.bin")
    assert loaded.mime_type == "application/pdf"
    assert loaded.text == "First page (one).\n\nSecond page."


def test_the_corpus_pdf_reads() -> None:
    loaded = read_file(DATA / "corpus" / "volcanoes.pdf")
    assert loaded.text.startswith("Volcanoes form where molten rock")


def test_a_pdf_without_text_says_it_needs_ocr() -> None:
    with pytest.raises(DocumentError, match=r"scan\.pdf has no text to ingest \(a scanned PDF"):
        extract_text(blank_pdf(), "application/pdf", source="scan.pdf")


def test_an_encrypted_pdf_says_so() -> None:
    with pytest.raises(DocumentError, match="is an encrypted PDF; decrypt it first"):
        extract_text(blank_pdf(password="secret"), None, source="locked.pdf")


def test_a_broken_pdf_is_a_document_error() -> None:
    with pytest.raises(DocumentError, match="not a readable PDF"):
        extract_text(b"%PDF-1.4\ngarbage", None, source="broken.pdf")


@pytest.mark.parametrize(
    ("name", "data", "mime"),
    [
        ("notes.md", b"# Notes\n\ntext", "text/markdown"),
        ("notes.txt", b"plain", "text/plain"),
        ("data.csv", b"a,b\n1,2", "text/plain"),
        ("page.xhtml", b"<p>hi</p>", "text/html"),
        ("no-suffix", b"<!DOCTYPE html><p>hi</p>", "text/html"),
        ("no-suffix", b"just words", "text/plain"),
        ("no-suffix", b"\xef\xbb\xbfwith a BOM", "text/plain"),
    ],
)
def test_types_come_from_the_suffix_or_the_bytes(name: str, data: bytes, mime: str) -> None:
    loaded = extract_text(data, None, source=name)
    assert loaded.mime_type == mime
    assert loaded.text.strip()
    assert not loaded.text.startswith("\ufeff")


def test_declared_types_win_and_charsets_are_honoured() -> None:
    loaded = extract_text("café".encode("latin-1"), "text/plain; charset=latin-1", source="u")
    assert loaded.text == "café"
    assert extract_text(b"<p>x</p>", "application/xhtml+xml", source="u").text == "x"
    assert extract_text(b"caf\xc3\xa9", "text/plain", source="u", charset="bogus").text == "café"


@pytest.mark.parametrize(
    ("name", "data", "declared", "message"),
    [
        ("photo.png", b"\x89PNG\r\n", None, "unsupported document type image/png"),
        ("blob", b"\x00\x01\x02binary", None, "unsupported document type application/octet-stream"),
        ("x", b"{}", "application/json", "unsupported document type application/json"),
        ("latin.txt", "café".encode("latin-1"), None, "is not UTF-8 text"),
        ("x", b"\xff\xfe", "text/plain; charset=ascii", "is not ascii text"),
        ("x", b"\xff", "text/plain; charset=nope", "is not UTF-8 text"),
        ("empty.txt", b"  \n ", None, "empty.txt has no text to ingest"),
        ("only-script.html", b"<script>x()</script>", None, "no text outside scripts"),
    ],
)
def test_unsupported_and_empty_input_is_a_clear_error(
    name: str, data: bytes, declared: str | None, message: str
) -> None:
    with pytest.raises(DocumentError, match=message) as info:
        extract_text(data, declared, source=name)
    assert info.value.source == name


def test_oversized_and_missing_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("word " * 1000)
    with pytest.raises(DocumentError, match=r"big\.txt is too large: 0\.0 MB, the limit is"):
        read_file(big, max_bytes=1000)
    assert read_file(big, max_bytes=5000).text.startswith("word word")
    with pytest.raises(DocumentError, match=r"cannot read .*missing\.txt"):
        read_file(tmp_path / "missing.txt")


def test_strings_given_as_documents() -> None:
    assert text_of("<p>a &amp; b</p>", "text/html", source="s") == "a & b"
    assert text_of("# md", "text/markdown; charset=utf-8", source="s") == "# md"
    with pytest.raises(DocumentError, match="cannot be given as a string"):
        text_of("%PDF", "application/pdf", source="s")
    with pytest.raises(DocumentError, match="s has no text"):
        text_of("   ", "text/plain", source="s")
