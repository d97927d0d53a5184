"""The package levels (``validation/levels``: mil here, coreml on macOS), one stage per level and
component, cached on the package's bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...host.session import ModelSession
from ...validation import checks as validation
from ...validation.checks import Check
from ...validation.levels import Level
from ..publish import ValidatedPackage
from ..stages import CALIBRATION_FILE, PARITY_FILE, Stages, read_checks, write_checks


def package_level_stage(
    stages: Stages,
    session: ModelSession,
    level: Level,
    component: str,
    package: ValidatedPackage,
    parity_dir: Path,
    bound: tuple[Any, str] | None = None,
) -> list[Check]:
    """One package level (levels/) on one component, its bounds resolved from the calibration the
    reference stage measured (or, for a compressed package, ``bound``: from its compression)."""
    from ...validation.calibration import Calibration

    ok, reason = level.available()
    if not ok:
        return [validation.skipped(level.name, reason, component)]
    calibration = Calibration.load(parity_dir / CALIBRATION_FILE)
    precision = session.variant.precision
    if bound is not None:
        tolerance, basis = bound
    else:
        tolerance, basis = calibration.resolve(session.model.tolerance(component, precision, level.name), precision)
    compressed = bool((package.compression or {}).get("compressed_weights"))
    options = {
        "integer_outputs": session.model.component(component).integer_outputs,
        "basis": basis,
        "precision": precision,
        "integer_tempo": validation.INTEGER_TEMPO if compressed else None,
    }
    parity_file = parity_dir / PARITY_FILE
    if not level.cached:
        with stages.stage(f"{level.name}:{component}"):
            return level.execute(component, package.path, parity_file, tolerance, **options)

    def build(tmp: Path) -> None:
        write_checks(tmp, level.execute(component, package.path, parity_file, tolerance, **options))

    # keyed on the package's bytes: a verdict is never reused for another package
    return read_checks(
        stages.cached(f"{level.name}:{component}", build, checked=True, extra={"package": package.sha256})
    )
