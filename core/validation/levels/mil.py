"""The ``mil`` level: the saved package executed by zoo's numpy MIL interpreter.

It runs on any OS, so it is the highest level reachable off macOS. The
interpreter is only as honest as its kernels: ``benchmarks/mil_conformance.py``
runs coremltools' own op tests through it. An op the interpreter cannot execute,
or a kernel error, is a failed check naming the reason, never a pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ...plugin.spec import Tolerance
from ..checks import Check, execute_parity

LEVEL = "mil"


def available() -> tuple[bool, str]:
    return True, ""


def execute(component: str, package: Path, parity_file: Path, tolerance: Tolerance, **options: Any) -> list[Check]:
    from ...mil import MilProgram

    notes: list[str] = []
    loaded: list[MilProgram] = []

    def predict(function: str, inputs: Mapping[str, Any], states: Mapping[str, Any]) -> Mapping[str, Any]:
        if not loaded:  # loaded inside execute_parity, so that an unreadable package is a failed check
            loaded.append(MilProgram.load(package))
        program = loaded[0]
        outputs = program.run_fresh(inputs, function, states)
        if program.first_nonfinite and not notes:
            notes.append(f"first non-finite value at {program.first_nonfinite}")
        return outputs

    return execute_parity(LEVEL, component, parity_file, tolerance, predict, notes=notes, **options)
