"""Validation: metrics, checks and judging, calibration, parity data and the levels.

May import: plugin, util, mil, coreml, runtime.
"""
