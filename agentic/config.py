"""Settings read from the environment (``AGENTIC_*``, ``VLLM_*``), validated once."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentic.errors import ConfigError

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Process-wide defaults. Anything here can also be passed explicitly where it is used."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_", extra="ignore")

    home: Path = Field(default=Path("~/.agentic"), description="Where sessions and banks live.")
    vllm_base_url: str = Field(
        default="http://localhost:8000/v1",
        validation_alias=AliasChoices("AGENTIC_VLLM_BASE_URL", "VLLM_BASE_URL"),
    )
    vllm_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("AGENTIC_VLLM_API_KEY", "VLLM_API_KEY")
    )
    chroma_url: str | None = Field(
        default=None,
        description="A Chroma server for the memory banks (http://host:8000); "
        "unset: embedded Chroma under <home>/memory.",
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="The sentence-transformers model of the memory banks: a model id or a path.",
    )
    embedding_device: str | None = Field(
        default=None, description="Device for the embedding model (cpu, cuda...); unset: auto."
    )

    def home_dir(self) -> Path:
        """The home directory, expanded and created if needed."""
        path = self.home.expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the agentic home directory {str(path)!r}: "
                f"{exc.strerror or exc}; set AGENTIC_HOME to a writable directory"
            ) from exc
        return path
