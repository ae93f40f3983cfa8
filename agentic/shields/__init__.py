"""Shields: checks on what goes into and comes out of the model."""

from __future__ import annotations

from agentic.shields.base import DEFAULT_REFUSAL, Shield, ShieldStage, Violation

__all__ = ["DEFAULT_REFUSAL", "Shield", "ShieldStage", "Violation"]
