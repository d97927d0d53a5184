"""The ``coreml`` level: the saved package executed by Apple's CoreML runtime.

Only macOS has the runtime; elsewhere the level is recorded as skipped with the
reason (never as passed). States are written under CoreML's identifiers and a
CoreML error is a failed check. ``tests/coreml_seam`` stands zoo's MIL interpreter in for CoreML
behind coremltools' ``MLModel``, so this level runs end to end on Linux in the tests; what it
passes there is recorded as ``coreml-seam``, with the engine named in each check's detail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ...coreml import runtime
from ...plugin.spec import Tolerance
from ..checks import Check, execute_parity

LEVEL = "coreml"
#: the level the checks of a stand-in for CoreML are recorded under (not in ``LEVELS``: never reached)
SEAM_LEVEL = "coreml-seam"


def available() -> tuple[bool, str]:
    return runtime.available()


def execute(component: str, package: Path, parity_file: Path, tolerance: Tolerance, **options: Any) -> list[Check]:
    def predict(function: str, inputs: Mapping[str, Any], states: Mapping[str, Any]) -> Mapping[str, Any]:
        return runtime.predict(package, function, inputs, states)

    # a stand-in for CoreML (a test seam: ``runtime.ENGINE`` says which) records its verdicts under a
    # level of its own, which no export's validation level counts: never as CoreML's
    level = LEVEL if runtime.ENGINE == "CoreML" else SEAM_LEVEL
    checks = execute_parity(level, component, parity_file, tolerance, predict, **options)
    for check in checks:
        check.detail = "; ".join(filter(None, [check.detail, f"executed by {runtime.ENGINE}"]))
    return checks
