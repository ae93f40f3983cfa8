"""Text out of what users ingest: plain text, Markdown, HTML and PDF, from files and URLs.

Every refusal is a :class:`~agentic.errors.DocumentError` that names the source and says why:
an unsupported type, a file or download over the size limit, bytes that are not text, a PDF
without extractable text. Nothing is skipped silently.
"""

from __future__ import annotations

import io
import mimetypes
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import httpx2

from agentic.errors import DocumentError, MissingDependencyError

__all__ = [
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "SUPPORTED_TYPES",
    "LoadedDocument",
    "extract_text",
    "fetch_url",
    "html_to_text",
    "read_file",
    "text_of",
]

DEFAULT_MAX_DOCUMENT_BYTES: Final = 20 * 1024 * 1024
PLAIN: Final = "text/plain"
MARKDOWN: Final = "text/markdown"
HTML: Final = "text/html"
PDF: Final = "application/pdf"
SUPPORTED_TYPES: Final = (PLAIN, MARKDOWN, HTML, PDF)
"""What can be ingested; any other ``text/*`` type is read as plain text."""

_ALIASES: Final = {
    "application/xhtml+xml": HTML,
    "text/x-markdown": MARKDOWN,
    "application/x-pdf": PDF,
}
_SUFFIXES: Final = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".htm": HTML,
    ".html": HTML,
    ".xhtml": HTML,
    ".pdf": PDF,
    ".txt": PLAIN,
    ".text": PLAIN,
    ".rst": PLAIN,
}
_UNTYPED: Final = frozenset({"", "application/octet-stream", "binary/octet-stream"})


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    """The text of one source, with the type it was read as."""

    text: str
    source: str
    mime_type: str
    title: str | None = None


def extract_text(
    data: bytes, mime_type: str | None, *, source: str, charset: str | None = None
) -> LoadedDocument:
    """The text of ``data``; the type is ``mime_type`` (which may carry a charset) when
    given, else guessed from the source's suffix and the bytes themselves."""
    if mime_type and charset is None:
        charset = _content_type(mime_type)[1]
    kind = _kind(mime_type, source, data)
    title: str | None = None
    if kind == PDF:
        text = _pdf_text(data, source)
    else:
        text = _decode(data, charset, source)
        if kind == HTML:
            text, title = html_to_text(text)
    _require_text(text, source, kind)
    return LoadedDocument(text=text, source=source, mime_type=kind, title=title)


def text_of(content: str, mime_type: str, *, source: str) -> str:
    """The text of content that is already a string (an attached document): HTML is
    reduced to its text, Markdown and other text is kept as it is."""
    kind = _normal_type(mime_type) or PLAIN
    if kind == PDF or not kind.startswith("text/"):
        raise DocumentError(
            f"{source}: a {mime_type} document cannot be given as a string; pass the file "
            f"(bank.add_file) or its bytes. Supported: {', '.join(SUPPORTED_TYPES)}",
            source=source,
        )
    text = html_to_text(content)[0] if kind == HTML else content
    _require_text(text, source, kind)
    return text


def _require_text(text: str, source: str, kind: str = PLAIN) -> None:
    """Raise DocumentError when ``text`` is blank, with a hint for PDFs and HTML."""
    if text.strip():
        return
    hint = {
        PDF: " (a scanned PDF has no text layer: run OCR on it first)",
        HTML: " (the page has no text outside scripts and styles)",
    }.get(kind, "")
    raise DocumentError(f"{source} has no text to ingest{hint}", source=source)


def read_file(path: str | Path, *, max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> LoadedDocument:
    """A file's text (blocking: run it off the event loop). Too large, unreadable or
    unsupported files are a DocumentError."""
    p = Path(path).expanduser()
    source = str(p)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise _too_large(source, size, max_bytes)
        data = p.read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read {source}: {exc.strerror or exc}", source=source) from exc
    if len(data) > max_bytes:  # it grew between stat and read
        raise _too_large(source, len(data), max_bytes)
    return extract_text(data, None, source=source)


async def fetch_url(
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    client: httpx2.AsyncClient | None = None,
    request_timeout: float = 30.0,
) -> LoadedDocument:
    """Download ``url`` (http or https) and extract its text.

    The body is read in pieces and dropped as soon as it passes ``max_bytes``, whatever the
    server announced; only supported content types are read at all.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise DocumentError(f"{url}: only http and https URLs can be fetched", source=url)
    own = client is None
    http = client or httpx2.AsyncClient(timeout=request_timeout, follow_redirects=True)
    try:
        data, declared, charset = await _download(http, url, max_bytes)
    except httpx2.HTTPError as exc:
        raise DocumentError(f"cannot fetch {url}: {type(exc).__name__}: {exc}", source=url) from exc
    finally:
        if own:
            await http.aclose()
    return extract_text(data, declared, source=url, charset=charset)


async def _download(
    http: httpx2.AsyncClient, url: str, max_bytes: int
) -> tuple[bytes, str | None, str | None]:
    async with http.stream("GET", url) as response:
        if response.status_code >= 400:
            raise DocumentError(f"{url} answered HTTP {response.status_code}", source=url)
        declared, charset = _content_type(response.headers.get("content-type", ""))
        if declared not in _UNTYPED:
            _kind(declared, url, b"")  # refuse unsupported types before reading the body
        announced = response.headers.get("content-length", "")
        if announced.isdigit() and int(announced) > max_bytes:
            raise _too_large(url, int(announced), max_bytes)
        body = bytearray()
        async for piece in response.aiter_bytes():
            body += piece
            if len(body) > max_bytes:
                raise _too_large(url, None, max_bytes)
    return bytes(body), (declared or None), charset


def _content_type(header: str) -> tuple[str, str | None]:
    """``(media type, charset)`` of a Content-Type header value."""
    parts = [p.strip() for p in header.split(";")]
    charset = None
    for param in parts[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value:
            charset = value.strip().strip('"')
    return parts[0].lower(), charset


def _too_large(source: str, size: int | None, max_bytes: int) -> DocumentError:
    got = f"{size / 1e6:.1f} MB" if size is not None else "more than that"
    return DocumentError(
        f"{source} is too large: {got}, the limit is {max_bytes / 1e6:.1f} MB "
        "(raise max_document_bytes on the bank to allow it)",
        source=source,
    )


def _normal_type(mime_type: str | None) -> str | None:
    if not mime_type:
        return None
    kind = mime_type.split(";")[0].strip().lower()
    return _ALIASES.get(kind, kind)


def _kind(mime_type: str | None, source: str, data: bytes) -> str:
    """The supported type to read ``data`` as; DocumentError for anything else."""
    kind = _normal_type(mime_type)
    if kind is None or kind in _UNTYPED:
        kind = _guess(source, data)
    if kind in (HTML, MARKDOWN, PDF):
        return kind
    if kind.startswith("text/"):
        return PLAIN
    raise DocumentError(
        f"{source}: unsupported document type {kind}; supported: {', '.join(SUPPORTED_TYPES)} "
        "(and other text/* types as plain text)",
        source=source,
    )


def _guess(source: str, data: bytes) -> str:
    """A type from the source's suffix, else from the first bytes."""
    suffix = Path(urlsplit(source).path if "://" in source else source).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    guessed = mimetypes.guess_type(f"x{suffix}")[0] if suffix else None
    if guessed and guessed not in _UNTYPED:
        return _normal_type(guessed) or guessed
    head = data[:512].lstrip().lower()
    if head.startswith(b"%pdf-"):
        return PDF
    if head.startswith((b"<!doctype html", b"<html")):
        return HTML
    if b"\x00" in data[:8192]:
        return "application/octet-stream"
    return PLAIN


def _decode(data: bytes, charset: str | None, source: str) -> str:
    encoding = charset or "utf-8-sig"
    try:
        return data.decode(encoding)
    except LookupError:
        encoding = "utf-8-sig"  # a charset Python does not know: try UTF-8
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise _not_text(source, encoding) from exc
    except UnicodeDecodeError as exc:
        raise _not_text(source, encoding) from exc


def _not_text(source: str, encoding: str) -> DocumentError:
    name = "UTF-8" if encoding == "utf-8-sig" else encoding
    return DocumentError(
        f"{source} is not {name} text (a binary file, or text in another encoding: "
        "convert it to UTF-8)",
        source=source,
    )


def _pdf_text(data: bytes, source: str) -> str:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:
        raise MissingDependencyError("pypdf", "memory") from exc
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{source} is an encrypted PDF; decrypt it first", source=source)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise DocumentError(f"{source} is not a readable PDF: {exc}", source=source) from exc
    return "\n\n".join(p.strip() for p in pages if p.strip())


# --- HTML -------------------------------------------------------------------------------

_SKIP: Final = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe"})
_BLOCK: Final = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "td", "th",
        "tr", "ul",
    }
)  # fmt: skip
_PARAGRAPH_TAGS: Final = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "pre"})
_SPACES: Final = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES: Final = re.compile(r"\n{3,}")


class _TextExtractor(HTMLParser):
    """Collects the visible text of a page, with line breaks at block elements.

    ``parts`` holds text and, between texts, the number of newlines a run of block
    boundaries needs (a paragraph two, a list item one; adjacent boundaries merge).
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str | int] = []
        self.title: list[str] = []
        self._skip = 0
        self._in_title = False

    def _break(self, tag: str) -> None:
        lines = 2 if tag in _PARAGRAPH_TAGS else 1
        if self.parts and isinstance(self.parts[-1], int):
            self.parts[-1] = max(self.parts[-1], lines)
        else:
            self.parts.append(lines)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCK:
            self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK:
            self._break(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self._break(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif self._skip:
            return
        elif data.strip() or not (self.parts and isinstance(self.parts[-1], int)):
            self.parts.append(data)

    def text(self) -> str:
        return "".join("\n" * p if isinstance(p, int) else p for p in self.parts)


def html_to_text(html: str) -> tuple[str, str | None]:
    """``(visible text, title)`` of an HTML page: scripts, styles and markup dropped,
    entities decoded, block elements on their own lines, runs of spaces collapsed."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (_SPACES.sub(" ", line).strip() for line in parser.text().split("\n"))
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    title = _SPACES.sub(" ", "".join(parser.title)).strip() or None
    return text, title
