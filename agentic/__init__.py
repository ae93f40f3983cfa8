"""llama-agentic: agents for Llama 3.x models on vLLM."""

from __future__ import annotations

__version__ = "0.1.0"
