"""Validation: metrics, checks and judging, calibration, parity data and the levels.

May import (pyproject's layer contract): runtime, mil, coreml, kit, plugin, util."""
