"""The ``reference`` level: each traceable against the upstream model, in torch.

Three checks per component, each of which holds for any weights (see ``calibration.py``):

1. ``float64_rel`` — the port and upstream, both run in float64 on the parity
   inputs, differ only by summation order (≤ 1e-9 relative). This is where a port
   bug shows, at any weight scale. (``float64_spectral`` for chaotic audio.)
2. ``rel`` — the port in float32 against upstream in float32, within a multiple
   of upstream's own float32-vs-float64 error measured on the same inputs.
3. ``<output>:mismatches`` — integer outputs (durations) compared exactly after
   the run loop's rounding.

It also produces the parity data (inputs and the port's fp32 outputs) that the
``mil`` and ``coreml`` levels execute the saved package on, and the
measurements their bounds derive from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ...kit.float64 import as_float64, inputs_float64
from ...plugin.spec import LEVELS, UNIT_ROUNDOFF, ModelSpec, Variant
from ...plugin.traceable import Traceable
from .. import checks as validation
from .. import parity
from ..calibration import Calibration, sensitivity, storage_effect
from ..checks import Check

LEVEL = "reference"


def available() -> tuple[bool, str]:
    return True, ""  # torch runs anywhere zoo does


@dataclass
class ReferenceResult:
    checks: list[Check] = field(default_factory=list)
    cases: list[parity.ParityCase] = field(default_factory=list)
    calibration: Calibration = field(default_factory=Calibration)


def check_component(
    model: ModelSpec, variant: Variant, component: str, upstream: Any, functions: Mapping[str, Traceable]
) -> ReferenceResult:
    """Run every function of ``component`` on its examples next to upstream (``upstream`` is
    ``Reference.model``: its torch modules are switched to float64 for the float64 check)."""
    spec = model.component(component)
    tolerance = model.tolerance(component, variant.precision, LEVEL)
    chaotic = any(model.tolerance(component, variant.precision, level).spectral_factor is not None for level in LEVELS)
    result = ReferenceResult()
    #: traceable, example, actual, expected
    runs: list[tuple[Traceable, Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]] = []
    missing = [fn for fn, t in functions.items() if t.reference is None]
    for fn, traceable in functions.items():
        states = parity.initial_states(traceable.module, [s.name for s in traceable.states]) if traceable.states else {}
        for i, example in enumerate(traceable.examples):
            actual = traceable.run(example)
            result.cases.append(parity.ParityCase(fn, i, dict(example), actual, states))
            if traceable.reference is None:
                continue
            expected = traceable.reference(**example)
            for name in traceable.outputs:
                if name not in expected:
                    raise ValueError(f"{component}.{fn}: reference gave no output {name!r}")
            runs.append((traceable, example, actual, expected))
    if missing:
        result.checks.append(validation.skipped(LEVEL, f"plugin gave no reference for functions {missing}", component))
    if not runs:
        return result
    calibration = result.calibration
    result.checks.extend(_float64(component, upstream, functions, runs, calibration, tolerance, chaotic))
    if chaotic:  # how far the torch component itself moves for a perturbation of each compared precision
        sizes = {precision: UNIT_ROUNDOFF[precision] for precision in sorted({"fp32", variant.precision})}
        for traceable in {id(t): t for t, _, _, _ in runs}.values():
            cases = [(example, actual) for t, example, actual, _ in runs if t is traceable]
            for precision, moved in sensitivity(traceable, cases, sizes).items():
                calibration.sensitivity[precision] = max(calibration.sensitivity.get(precision, 0.0), moved)
    if any(model.tolerance(component, variant.precision, level).storage for level in LEVELS):
        calibration.storage_movement = max(storage_effect(t, t.examples) for t in functions.values())
    fixed, basis = calibration.resolve(tolerance, "fp32")
    if fixed.checks():
        results = [
            validation.compare(a[n], e[n], fixed.spectral_max is not None) for t, _, a, e in runs for n in t.outputs
        ]
        for check in validation.judge(LEVEL, component, results, fixed):
            check.basis = basis
            result.checks.append(check)
    pairs = [(n, a[n], e[n]) for t, _, a, e in runs for n in t.outputs]
    result.checks.extend(validation.integer_mismatches(LEVEL, component, pairs, spec.integer_outputs))
    return result


def _float64(
    component: str,
    upstream: Any,
    functions: Mapping[str, Traceable],
    runs: list,
    calibration: Calibration,
    tolerance: Any,
    chaotic: bool,
) -> list[Check]:
    """Port and upstream in float64 on the parity inputs; measures upstream's own fp32 error too."""
    metric = "float64_spectral" if chaotic else "float64_rel"
    key = "spectral" if chaotic else "rel"

    port = [t.module for t in functions.values()]

    def run(lazy: bool) -> tuple[list[dict[str, float]], list[float]]:
        results, upstream_errors = [], []
        for traceable, example, _, expected32 in runs:
            wide = inputs_float64(example)
            if lazy:  # one side in float64 at a time, each module's weights only while it runs
                with as_float64(*port, per_call=True):
                    actual = traceable.run(wide)
                with as_float64(lazy=(upstream,), per_call=True):
                    expected = traceable.reference(**wide)
            else:
                with as_float64(upstream, *port):
                    actual, expected = traceable.run(wide), traceable.reference(**wide)
            for name in traceable.outputs:
                results.append(validation.compare(actual[name], expected[name], chaotic))
                upstream_errors.append(validation.compare(expected32[name], expected[name])["rel"])
        return results, upstream_errors

    # memory first: the port, then upstream's called modules, each module's weights widened only while
    # it runs (vibevoice: port and upstream widened together added 2.9 GB to the export's peak, each side
    # widened whole for its own run 2.4 GB); a lazy run that raises or does not pass is run again with
    # everything widened at once (as_float64 says why)
    try:
        results, upstream_errors = run(lazy=True)
        lazy_ok = tolerance.float64_rel is None or max(r[key] for r in results) <= tolerance.float64_rel
    except Exception:  # noqa: BLE001 - judged by the eager run below
        lazy_ok = False
    try:
        if not lazy_ok:
            results, upstream_errors = run(lazy=False)
    except Exception as exc:  # noqa: BLE001 - e.g. an upstream op with no float64 kernel: skipped, never passed
        calibration.float64_skipped = f"{type(exc).__name__}: {exc}"
        return [
            Check(LEVEL, component, "skipped", metric, reason=f"the float64 run failed: {calibration.float64_skipped}")
        ]
    calibration.upstream_rel = float(max(upstream_errors))
    if tolerance.float64_rel is None:
        return []
    # chaotic audio too: in float64 no sign flip of a near-silent bin happens (kokoro's decoder: rel
    # 3e-11 sample-wise), but the spectral distance is the metric its other levels use
    value, bound = max(r[key] for r in results), tolerance.float64_rel
    basis = "float64: the port and upstream may differ only by summation order"
    ok = value <= bound  # NaN never passes
    reason = "" if math.isfinite(value) else "non-finite output values: an overflow on either side proves nothing"
    return [
        Check(
            LEVEL,
            component,
            "passed" if ok else "failed",
            metric,
            float(value),
            float(bound),
            reason=reason,
            basis=basis,
        )
    ]
