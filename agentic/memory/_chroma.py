"""Chroma behind the memory banks: one client (embedded on disk, a server, or in-process),
its blocking calls run off the event loop, its errors turned into ours."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

from agentic.errors import (
    ConfigError,
    EmbeddingMismatchError,
    MemoryBankError,
    MemoryStoreUnavailableError,
    MissingDependencyError,
)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

__all__ = ["ChromaClient", "parse_url"]

T = TypeVar("T")
_DEFAULT_PORT: Final = 8000


class ChromaClient:
    """A Chroma client and where it points; ``call`` runs one of its methods off the loop."""

    def __init__(self, client: ClientAPI, where: str, url: str | None) -> None:
        self.client = client
        self.where = where
        self.url = url

    @classmethod
    def connect(cls, *, path: Path | None, url: str | None) -> ChromaClient:
        """Open the client (blocking): a server at ``url``, else embedded at ``path``, else
        in-process memory only. An unreachable server is MemoryStoreUnavailableError."""
        chromadb = _import_chromadb()
        settings = chromadb.config.Settings(anonymized_telemetry=False)
        if url is not None:
            host, port, ssl = parse_url(url)
            try:
                client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
            except Exception as exc:  # chromadb says ValueError("Could not connect...")
                raise _unreachable(url, exc) from exc
            return cls(client, f"the Chroma server at {url}", url)
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(path=str(path), settings=settings)
            return cls(client, f"embedded Chroma at {path}", None)
        return cls(chromadb.EphemeralClient(settings=settings), "in-memory Chroma", None)

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on a worker thread, Chroma's errors translated."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: Exception) -> Exception:
        """Our exception for one that Chroma (or its HTTP client) raised."""
        import httpx
        from chromadb.errors import ChromaError, InvalidArgumentError

        if isinstance(exc, MemoryBankError | ConfigError):
            return exc
        if isinstance(exc, httpx.TransportError | ConnectionError):
            return _unreachable(self.url or self.where, exc)
        if isinstance(exc, InvalidArgumentError) and "dimension" in str(exc):
            return EmbeddingMismatchError(
                f"{self.where}: {exc}. The bank was built with another embedding model; "
                "open it with the model it was built with"
            )
        if isinstance(exc, ChromaError | ValueError | TypeError):
            return MemoryBankError(f"{self.where} refused the request: {exc}")
        return exc

    def close(self) -> None:
        """Release the client (blocking); embedded data stays on disk."""
        self.client.close()  # type: ignore[attr-defined]  # Client has it; ClientAPI omits it


def _import_chromadb() -> Any:
    try:
        import chromadb
        import chromadb.config
    except ImportError as exc:
        raise MissingDependencyError("chromadb", "memory") from exc
    return chromadb


def parse_url(url: str) -> tuple[str, int, bool]:
    """``(host, port, ssl)`` of a Chroma server URL; ConfigError when it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"chroma_url {url!r} is not an http(s) URL; give it as http://host:8000")
    if parts.path.strip("/"):
        raise ConfigError(f"chroma_url {url!r}: give the server's root URL, without a path")
    ssl = parts.scheme == "https"
    try:
        port = parts.port or (443 if ssl else _DEFAULT_PORT)
    except ValueError:
        raise ConfigError(f"chroma_url {url!r} has an invalid port") from None
    return parts.hostname, port, ssl


def _unreachable(url: str, exc: BaseException) -> MemoryStoreUnavailableError:
    return MemoryStoreUnavailableError(
        f"cannot reach the Chroma server at {url} ({exc}). Start one with "
        "`chroma run --path ./chroma --port 8000`, or unset AGENTIC_CHROMA_URL to use "
        "embedded Chroma"
    )
