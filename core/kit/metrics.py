"""How a plugin's loop-parity cases compare audio: the same metrics the core judges by."""

from __future__ import annotations

from ..validation.metrics import compare, spectral_distance

__all__ = ["compare", "spectral_distance"]
