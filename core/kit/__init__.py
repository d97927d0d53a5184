"""Helpers for plugin authors: Neural-Engine-friendly layers, weight loading, audio,
text splitting and float64 widening.

May import (pyproject's layer contract): plugin, util."""
