"""Checks, the comparison metrics recorded in the registry, and how a level's verdict is reached.

The levels themselves (what runs where) are in ``levels/``. A level that cannot
run is recorded as ``skipped`` with its reason, never as passed. The highest
level reached is the last one, in order, that passed without any earlier level
failing or being skipped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Iterator, Mapping

from ..plugin.names import LEVELS
from ..plugin.spec import Tolerance
from .metrics import INTEGER_ROUNDINGS, INTEGER_TEMPO, aligned_spectral_distance, compare, spectral_distance


@dataclass
class Check:
    level: str
    component: str
    status: str  # passed | failed | skipped
    metric: str = ""
    value: float | None = None
    threshold: float | None = None
    reason: str = ""
    #: what was compared, when the component name does not say (whole-loop cases)
    detail: str = ""
    #: the worst value of every metric, for the record (max_abs, rel, cosine)
    worst: dict[str, float] | None = None
    #: how a bound measured at export time was derived (see calibration.py)
    basis: str = ""

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", {})}


def judge(level: str, component: str, results: Iterable[Mapping[str, float]], tolerance: Tolerance) -> list[Check]:
    """Worst case over ``results`` for each metric the tolerance bounds."""
    results = list(results)
    worst = {
        "max_abs": float(max(r["max_abs"] for r in results)),
        "rel": float(max(r["rel"] for r in results)),
        "cosine": float(min(r["cosine"] for r in results)),
    }
    if all("spectral" in r for r in results):
        worst["spectral"] = float(max(r["spectral"] for r in results))
    checks = []
    for metric, threshold in tolerance.checks().items():
        if metric == "cosine_min":
            value = min(r["cosine"] for r in results)
            ok = value >= threshold
        elif metric == "snr_db_min":
            value = min(r["snr_db"] for r in results)
            ok = value >= threshold
            if value == float("inf"):  # identical outputs: finite for the record, still a pass
                value = 999.0
        elif metric == "spectral_max":
            value = max(r["spectral"] for r in results)
            ok = value <= threshold
        else:
            value = max(r[metric] for r in results)
            ok = value <= threshold
        # NaN never passes, nor does anything against a bound that is not finite (a measured
        # calibration that overflowed)
        reason = ""
        if not math.isfinite(value):
            reason = "non-finite output values: an overflow on either side proves nothing"
        if not math.isfinite(threshold):
            reason = "the bound is not finite (its calibration measured a non-finite movement)"
        ok = bool(ok) and math.isfinite(value) and math.isfinite(threshold)
        checks.append(
            Check(
                level,
                component,
                "passed" if ok else "failed",
                metric,
                float(value),
                float(threshold),
                reason=reason,
                worst=dict(worst),
            )
        )
    if not checks:
        raise ValueError(f"{component}: tolerance bounds no metric")
    return checks


#: an integer output may flip by one only where the expected raw value lies within this many unit
#: roundoffs (of the compared precision, relative to the value) of a rounding boundary; in fp32 that
#: is ~1e-6 frames, so the reference level and fp32 packages compare exactly in practice
BOUNDARY_ULPS = 16


def _rounded(
    pairs: Iterable[tuple[str, Any, Any]], integer_outputs: Mapping[str, str]
) -> Iterator[tuple[str, Any, Any, Any, Any, Any]]:
    """For each pair naming an integer output: (name, its rounding, actual, expected, both rounded)."""
    import numpy as np

    for name, actual, expected in pairs:
        if name in integer_outputs:
            rounding = INTEGER_ROUNDINGS[integer_outputs[name]]
            a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
            yield name, rounding, a, e, rounding(a), rounding(e)


def integer_mismatches(
    level: str,
    component: str,
    pairs: Iterable[tuple[str, Any, Any]],
    integer_outputs: Mapping[str, str],
    precision: str = "fp32",
) -> list[Check]:
    """Integer outputs (``name -> rounding``) compared after the run loop's rounding: one check per
    output, whose value is the number of elements that differ beyond what the compared precision
    explains (a flip by one of a raw value within BOUNDARY_ULPS unit roundoffs of a rounding boundary)."""
    import numpy as np

    from ..plugin.spec import UNIT_ROUNDOFF

    counts: dict[str, list[int]] = {}
    for name, _, a, e, ra, re in _rounded(pairs, integer_outputs):
        differ = ra != re
        near = np.abs(np.abs(e - np.floor(e)) - 0.5) <= BOUNDARY_ULPS * UNIT_ROUNDOFF[precision] * np.maximum(
            np.abs(e), 1.0
        )
        explained = differ & (np.abs(ra - re) == 1) & near
        total = counts.setdefault(name, [0, 0])
        total[0] += int(np.count_nonzero(differ & ~explained))
        total[1] += int(np.count_nonzero(explained))
    checks = []
    for name, (bad, flips) in sorted(counts.items()):
        note = f"; {flips} flip(s) by one within {BOUNDARY_ULPS} {precision} roundoffs of a boundary" if flips else ""
        checks.append(
            Check(
                level,
                component,
                "passed" if bad == 0 else "failed",
                f"{name}:mismatches",
                float(bad),
                0.0,
                basis=integer_outputs[name],
                reason=note.lstrip("; "),
            )
        )
    return checks


def integer_moves(
    level: str,
    component: str,
    pairs: Iterable[tuple[str, Any, Any]],
    integer_outputs: Mapping[str, str],
    tempo: float = INTEGER_TEMPO,
) -> list[Check]:
    """A compressed package's integer outputs (``name -> rounding``) after the run loop's rounding,
    against the expected values' (see ``INTEGER_TEMPO``): per output ``<name>:moved`` (Σ|Δ|, bound:
    the larger Σ|Δ| of the expected values scaled by 1 + tempo or 1 / (1 + tempo)) and
    ``<name>:jumps`` (elements moved by more than one and more than that tempo change moves them:
    bound 0)."""
    import numpy as np

    totals: dict[str, list[float]] = {}
    for name, rounding, a, e, ra, re in _rounded(pairs, integer_outputs):
        moved = np.abs(ra - re)
        moved[~np.isfinite(a)] = np.inf  # a non-finite duration moved without bound
        slower, faster = np.abs(rounding(e * (1 + tempo)) - re), np.abs(rounding(e / (1 + tempo)) - re)
        allowed = np.maximum(1, np.maximum(slower, faster))
        total = totals.setdefault(name, [0.0, 0.0, 0.0, 0.0, 0.0])
        total[0] += float(np.sum(moved))
        total[1] += float(max(np.sum(slower), np.sum(faster)))
        total[2] += float(np.count_nonzero(moved > allowed))
        total[3] += float(np.count_nonzero(moved > 0))
        total[4] += float(moved.size)
    checks = []
    for name, (moved, bound, jumps, changed, size) in sorted(totals.items()):
        basis = integer_outputs[name]
        detail = f"{int(changed)} of {int(size)} changed after rounding"
        why = (
            f"Σ|Δ| ≤ what a ±{tempo:.0%} tempo change moves the expected values (core.validation.metrics.INTEGER_TEMPO)"
        )
        checks.append(
            Check(
                level,
                component,
                "passed" if moved <= bound else "failed",
                f"{name}:moved",
                moved,
                bound,
                basis=basis,
                reason=why,
                detail=detail,
            )
        )
        checks.append(
            Check(
                level,
                component,
                "passed" if jumps == 0 else "failed",
                f"{name}:jumps",
                jumps,
                0.0,
                basis=basis,
                reason=f"elements moved by more than one and more than a ±{tempo:.0%} tempo change moves them",
                detail=detail,
            )
        )
    return checks


def loop_checks(cases: Iterable[Any]) -> list[Check]:
    """``loop_parity`` cases judged at the reference level, each recorded as ``loop:<name>``."""
    checks: list[Check] = []
    for case in cases:
        name = f"loop:{case.name}"
        try:
            result = compare(case.actual, case.expected, case.tolerance.spectral_max is not None)
        except ValueError as exc:  # e.g. another number of frames
            checks.append(Check("reference", name, "failed", "shape", reason=str(exc)))
            continue
        for check in judge("reference", name, [result], case.tolerance):
            check.detail = ", ".join(f"{k}={v}" for k, v in case.info.items())
            checks.append(check)
    return checks


def compressed_loop_checks(
    compressed: Any, uncompressed: Any, other_seed: Any, loop: Any, audio_bound: tuple[float, str] | None = None
) -> list[Check]:
    """A compressed export's whole loop (``RunResult``) against the uncompressed packages' on the
    same input and seed, judged at the ``mil`` level by ``loop`` (``spec.CompressedLoop``): its
    spectral bound is ``loop.spectral_factor`` × the distance of the uncompressed loop's audio
    with another seed (``other_seed``), or ``audio_bound`` (the bound ``loop.audio_component`` was
    judged by, with its basis) where that is larger. ``loop.aligned``: the segments' frames judged
    by the tempo rule (``INTEGER_TEMPO``: on rounded durations, Σ|Δ| ≤ tempo × their sum, none moved
    by more than one frame and tempo of itself) and the audio compared aligned by the segments."""
    import numpy as np

    name = "loop:compressed"
    detail = f"frames {compressed.frames} vs {uncompressed.frames} uncompressed; text {loop.text!r}"
    aligned = bool(
        loop.aligned
        and compressed.segments
        and uncompressed.segments
        and len(compressed.segments) == len(uncompressed.segments)
    )
    if aligned:
        # only rounded frames here: a ±tempo change moves integer durations by tempo × their sum
        # on average (their raw values spread across the rounding cells), so that is the bound
        got, want = np.asarray(compressed.segments, np.float64), np.asarray(uncompressed.segments, np.float64)
        shifts = np.abs(got - want)
        allowed = float(np.floor(INTEGER_TEMPO * want.sum()))
        jumps = float(np.count_nonzero(shifts > np.maximum(1, np.round(INTEGER_TEMPO * want))))
        detail = f"{int(np.count_nonzero(shifts))} of {shifts.size} segments changed; {detail}"
        checks = [
            Check(
                "mil",
                name,
                "passed" if shifts.sum() <= allowed else "failed",
                "segments:moved",
                float(shifts.sum()),
                allowed,
                detail=detail,
                basis=f"Σ|Δ| ≤ {INTEGER_TEMPO:.0%} of the {int(want.sum())} frames (a ±{INTEGER_TEMPO:.0%} tempo "
                f"change's average); {loop.basis}",
            ),
            Check(
                "mil",
                name,
                "passed" if jumps == 0 else "failed",
                "segments:jumps",
                jumps,
                0.0,
                detail=detail,
                basis=f"segments moved by more than one frame and more than {INTEGER_TEMPO:.0%} of themselves; "
                f"{loop.basis}",
            ),
        ]
    else:
        delta = abs(int(compressed.frames) - int(uncompressed.frames))
        if loop.aligned:
            detail += f"; {len(compressed.segments)} segments vs {len(uncompressed.segments)}: not aligned"
        ok = delta <= loop.frames_max_delta and not (
            loop.aligned and len(compressed.segments) != len(uncompressed.segments)
        )
        checks = [
            Check(
                "mil",
                name,
                "passed" if ok else "failed",
                "frames_delta",
                float(delta),
                float(loop.frames_max_delta),
                detail=detail,
                basis=loop.basis,
            )
        ]

    def distance(a: Any, b: Any) -> float | None:
        if len(a.audio) == 0 or len(b.audio) == 0:
            return None
        if not np.isfinite(np.asarray(a.audio, np.float64)).all():
            return float("inf")
        if aligned:
            return aligned_spectral_distance(a.audio, b.audio, a.segments or b.segments, b.segments)
        n = min(len(a.audio), len(b.audio))
        return spectral_distance(np.asarray(a.audio[:n], np.float64), np.asarray(b.audio[:n], np.float64))

    moved, seeds = distance(compressed, uncompressed), distance(other_seed, uncompressed)
    if moved is None or seeds is None:
        checks.append(
            Check("mil", name, "failed", "spectral_max", reason="no audio to compare", detail=detail, basis=loop.basis)
        )
        return checks
    bound = float(loop.spectral_factor * seeds)
    how = "aligned segment by segment, " if aligned else ""
    basis = (
        f"spectral ({how}{loop.spectral_factor:g} × {seeds:.3g}, the uncompressed loop's own distance between seeds 0 "
        f"and 1); {loop.basis}"
    )
    if audio_bound is not None and math.isfinite(audio_bound[0]) and audio_bound[0] > bound:
        bound = audio_bound[0]
        basis = (
            f"spectral ({how}≤ {bound:.3g}, the bound {loop.audio_component} was judged by alone: {audio_bound[1]}; "
            f"another seed moves it {seeds:.3g}); {loop.basis}"
        )
    checks.append(
        Check(
            "mil",
            name,
            "passed" if moved <= bound else "failed",
            "spectral_max",
            moved,
            bound,
            detail=detail,
            basis=basis,
        )
    )
    return checks


def skipped(level: str, reason: str, component: str = "*") -> Check:
    return Check(level, component, "skipped", reason=reason)


def level_reached(checks: Iterable[Check]) -> str | None:
    """The highest level passed by every component, with all lower levels passed too."""
    by_level: dict[str, list[str]] = {}
    for c in checks:
        by_level.setdefault(c.level, []).append(c.status)
    reached = None
    for level in LEVELS:
        statuses = by_level.get(level)
        if not statuses or any(s != "passed" for s in statuses):
            break
        reached = level
    return reached


def level_failed(checks: Iterable[Check], level: str) -> bool:
    return any(c.level == level and c.status == "failed" for c in checks)


def execute_parity(
    level: str,
    component: str,
    parity_file: Any,
    tolerance: Tolerance,
    predict: Any,
    integer_outputs: Mapping[str, str] | None = None,
    basis: str = "",
    precision: str = "fp32",
    notes: list[str] | None = None,
    integer_tempo: float | None = None,
) -> list[Check]:
    """Execute a package on the stored parity inputs and compare with the traceable's outputs.

    ``predict(function, inputs, initial_states) -> outputs`` runs the package (see the package
    levels in ``levels/``); ``notes`` it fills are added to every check's reason. ``integer_tempo``
    (a compressed package): integer outputs judged by ``integer_moves``, else by ``integer_mismatches``. A package that
    cannot be executed (unreadable, unsupported op, kernel or runtime error) is a failed check
    naming the reason, never a pass and never a crash.
    """
    from ..mil import MilError
    from . import parity

    cases = parity.load(parity_file)
    spectral = tolerance.spectral_max is not None
    results: list[dict[str, float]] = []
    pairs: list[tuple[str, Any, Any]] = []
    try:
        for case in cases:
            got = predict(case.function, case.inputs, case.states)
            results.extend(compare(got[name], want, spectral) for name, want in case.outputs.items())
            pairs.extend((name, got[name], want) for name, want in case.outputs.items())
    except Exception as exc:  # noqa: BLE001 - an interpreter or CoreML error is a failed check, never a crash
        reason = str(exc) if isinstance(exc, MilError) else f"{type(exc).__name__}: {exc}"
        return [Check(level, component, "failed", "execute", reason=reason)]
    checks = judge(level, component, results, tolerance)
    for check in checks:
        check.reason = "; ".join(notes or [])
        check.basis = basis
    if integer_tempo is not None:  # a compressed package: its integer outputs judged by how far they move
        return checks + integer_moves(level, component, pairs, integer_outputs or {}, integer_tempo)
    return checks + integer_mismatches(level, component, pairs, integer_outputs or {}, precision)


def integer_outputs_from_records(
    records: Iterable[Mapping[str, Any]], component: str, level: str
) -> tuple[dict[str, str], float | None]:
    """The integer outputs (name -> rounding) an export was judged on, from its ``<name>:mismatches``
    records, or (a compressed package) its ``<name>:moved`` records; and the tempo these were judged
    by (``integer_moves``; None: exactly, by ``integer_mismatches``)."""
    mine = [r for r in records if r.get("component") == component and r.get("level") == level and r.get("basis")]
    exact = {r["metric"].split(":")[0]: r["basis"] for r in mine if str(r.get("metric", "")).endswith(":mismatches")}
    moved = {r["metric"].split(":")[0]: r["basis"] for r in mine if str(r.get("metric", "")).endswith(":moved")}
    return ({**exact, **moved}, INTEGER_TEMPO if moved else None)


def tolerance_from_records(records: Iterable[Mapping[str, Any]], component: str, level: str) -> Tolerance | None:
    """Rebuild the tolerance an export was judged by from its registry records."""
    fixed = (
        "max_abs",
        "rel",
        "cosine_min",
        "spectral_max",
        "snr_db_min",
    )  # bounds measured at export time are recorded as these
    bounds = {
        r["metric"]: r["threshold"]
        for r in records
        if r.get("component") == component and r.get("level") == level and "threshold" in r and r.get("metric") in fixed
    }
    return Tolerance(**bounds) if bounds else None
