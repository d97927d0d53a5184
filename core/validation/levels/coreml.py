"""The ``coreml`` level: the saved package executed by Apple's CoreML runtime.

Only macOS has the runtime; elsewhere the level is recorded as skipped with the
reason (never as passed). States are written under CoreML's identifiers and a
CoreML error is a failed check (``tests/core/test_coreml_seam.py`` checks both at the
seam with coremltools).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ...coreml import runtime
from ...plugin.spec import Tolerance
from ..checks import Check, execute_parity

LEVEL = "coreml"


def available() -> tuple[bool, str]:
    return runtime.available()


def execute(component: str, package: Path, parity_file: Path, tolerance: Tolerance, **options: Any) -> list[Check]:
    def predict(function: str, inputs: Mapping[str, Any], states: Mapping[str, Any]) -> Mapping[str, Any]:
        return runtime.predict(package, function, inputs, states)

    return execute_parity(LEVEL, component, parity_file, tolerance, predict, **options)
