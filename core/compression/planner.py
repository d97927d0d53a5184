"""The ``mixed`` compression's plan: one table width per layer from each layer's measured effect on
the outputs (``plan_mixed``), integer outputs planned by their margin to the rounding boundary."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .modes import INTEGER_PLAN_JUMPS, INTEGER_PLAN_SHARE, MIXED_BITS, MIXED_TARGET_DB
from .palette import palette_config
from .passes import _apply, _load, _original_name, decompress, error_energy, weight_snrs

#: what the sensitivity runs may keep of the parity cases' runs, to restart each layer's run at
#: the first step reading it (MilProgram.record); past it, fewer restart points, never more memory
SNAPSHOT_BYTES = 512 << 20


def integer_noise_budget(values: Any, rounding: str, tempo: float | None = None) -> float:
    """The relative noise power (Σ n² / Σ v²) an integer output ``values`` (before ``rounding``) may
    carry: the largest Gaussian noise σ (in the output's own units, where the rounding boundaries
    are) whose expected flips Σ_i Q(m_i / σ) — m_i the distance of value i to its nearest rounding
    boundary — move the rounded values by at most INTEGER_PLAN_SHARE of what the gate allows (the
    Σ|Δ| a ±tempo change makes, ``validation.integer_moves``), and whose expected moves by more than
    one Σ_i Q((m_i + 1) / σ) stay under INTEGER_PLAN_JUMPS."""
    import math

    import numpy as np

    from ..validation.metrics import INTEGER_ROUNDINGS, INTEGER_TEMPO

    tempo = INTEGER_TEMPO if tempo is None else tempo
    e = np.asarray(values, np.float64).reshape(-1)
    power = float(np.sum(e**2))
    if e.size == 0 or power == 0 or not np.isfinite(e).all():
        return 0.0
    r = INTEGER_ROUNDINGS[rounding]
    allowed = max(float(np.sum(np.abs(r(e * (1 + tempo)) - r(e)))), float(np.sum(np.abs(r(e / (1 + tempo)) - r(e)))))
    margin = 0.5 - np.abs(e - np.round(e))
    if rounding == "round_min1":  # everything under 1.5 rounds to 1: its one boundary is 1.5
        margin = np.where(e < 1.5, 1.5 - e, margin)
    margin = np.maximum(margin, 0.0)

    def q(x: Any) -> float:
        return float(np.sum(0.5 * np.vectorize(math.erfc)(x / math.sqrt(2))))

    def fits(sigma: float) -> bool:
        return q(margin / sigma) <= INTEGER_PLAN_SHARE * allowed and q((margin + 1) / sigma) <= INTEGER_PLAN_JUMPS

    lo, hi = 1e-9, 10.0
    if not fits(lo):
        return 0.0
    for _ in range(60):  # bisection on a log scale: σ to 1e-9 relative
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo**2 * e.size / power


@dataclass(frozen=True)
class MixedTargets:
    """What ``mixed`` aims at per output name (dB): ``db`` names some outputs; ``integer`` (name ->
    rounding) outputs the host rounds, each planned by its values' margins to the rounding boundary
    (``integer_noise_budget``); with ``spectral_db`` (a component whose audio is chaotic sample by
    sample) every other output is measured by its spectral distance d instead of sample-wise noise
    (target -20·log10 d); else MIXED_TARGET_DB."""

    db: tuple[tuple[str, float], ...] = ()
    spectral_db: float | None = None
    basis: str = ""
    integer: tuple[tuple[str, str], ...] = ()
    #: every output not named otherwise (instead of MIXED_TARGET_DB): e.g. the SNR a component's
    #: cosine gate implies (``cosine_snr_db``)
    default_db: float | None = None

    def budget(self, output: str, values: Any) -> float:
        """The relative noise power ``output`` may carry, given its uncompressed values."""
        rounding = dict(self.integer).get(output)
        if rounding is not None:
            return integer_noise_budget(values, rounding)
        return 10 ** (-self.target(output) / 10)

    def spectral(self, output: str) -> bool:
        return self.spectral_db is not None and output not in dict(self.db) and output not in dict(self.integer)

    def target(self, output: str) -> float:
        named = dict(self.db)
        if output in named:
            return named[output]
        if self.spectral_db is not None:
            return self.spectral_db
        return self.default_db if self.default_db is not None else MIXED_TARGET_DB


def cosine_snr_db(cosine: float) -> float:
    """The SNR (dB) at which an output carrying noise uncorrelated with it keeps cosine similarity
    ``cosine`` with its clean self: cos = 1 / sqrt(1 + 1/SNR), so SNR = 1 / (1/cos² - 1)."""
    import math

    return 10 * math.log10(1 / (1 / cosine**2 - 1))


def layer_group(name: str) -> str:
    """The layer a weight constant belongs to: its name up to the first layer number (coremltools
    names constants after torch parameter paths: ``transformer_layers_3_self_attn_out_proj_weight``
    -> ``transformer_layers_3``); a name without one is its own group."""
    match = re.match(r"^(.*?_\d+)(?:_|$)", name)
    return match.group(1) if match else name


#: layers each holding less than this share of a component's weights are planned as one layer
#: (one sensitivity run, one width): planning them one by one saves few bytes for a run each.
#: Measured (2026-12-05, full size, random weights): kokoro's decoder 14 of 31 layers under 1 %,
#: 5.5 % of its weights together; its predictor 9 of 29 (3.3 %); pocket_tts' flowlm 13 of 25
#: (2.3 %); vibevoice's decoder 19 of 29 (1.4 %), its tts_lm 5 of 25 (0.3 %)
SMALL_LAYER_SHARE = 0.01

#: the name the small layers are planned under
SMALL_LAYERS = "(layers under 1% of the weights)"


def merge_small_layers(groups: dict[str, list[str]], sizes: dict[str, int], readable: Any) -> dict[str, list[str]]:
    """``groups`` (layer -> weight names) with every layer under SMALL_LAYER_SHARE of the weights
    (``sizes``: name -> values) merged into one, SMALL_LAYERS, when there are two or more; a layer
    with a weight no executed op reads directly (``readable(name)`` false: it cannot be measured,
    ``plan_mixed`` keeps it at 8 bits) stays on its own."""
    total = sum(sizes[n] for members in groups.values() for n in members)
    small = [
        g
        for g, members in groups.items()
        if sum(sizes[n] for n in members) < SMALL_LAYER_SHARE * total and all(readable(n) for n in members)
    ]
    if len(small) < 2:
        return groups
    merged = {g: members for g, members in groups.items() if g not in small}
    merged[SMALL_LAYERS] = [n for g in small for n in groups[g]]
    return merged


def choose_widths(
    width: dict[str, int], gain: dict[str, Any], noise: dict[int, dict[str, float]], size: dict[str, int], budget: Any
) -> Any:
    """Widen layers in ``width`` (name -> bits, updated in place) until every output's predicted
    noise Σ_l gain[l][o] · noise[bits_l][l] is within ``budget[o]``: each step widens the layer that
    removes the most noise per added byte from the output most over its budget that a widening
    still helps; then layers whose widening later ones made unneeded are narrowed again. Returns
    the predicted noise per output."""
    import numpy as np

    def predicted() -> Any:
        total = np.zeros(len(budget))
        for layer, g in gain.items():
            total += g * noise[width[layer]][layer]
        return total

    def widest_help(output: int) -> str | None:
        best, best_rate = None, 0.0
        for layer, g in gain.items():
            b = width[layer]
            if b == MIXED_BITS[-1]:
                continue
            wider = MIXED_BITS[MIXED_BITS.index(b) + 1]
            rate = g[output] * (noise[b][layer] - noise[wider][layer]) / (size[layer] * (wider - b))
            if rate > best_rate:
                best, best_rate = layer, rate
        return best

    total = predicted()
    while total.size:
        over = total / budget
        # an output whose layers are all at 8 bits cannot get better: the next one is served
        best = next(
            (layer for o in np.argsort(-over) if over[o] > 1 for layer in [widest_help(int(o))] if layer is not None),
            None,
        )
        if best is None:
            break
        width[best] = MIXED_BITS[MIXED_BITS.index(width[best]) + 1]
        total = predicted()
    # a widening chosen early can be made unneeded by later ones: narrow again, most bytes saved
    # first, every layer whose narrower width keeps each output within its budget (an output over
    # it already, one no widening could help, gets no noisier)
    while total.size:
        best, best_saved = None, 0
        for layer, g in gain.items():
            b = width[layer]
            if b == MIXED_BITS[0]:
                continue
            narrower = MIXED_BITS[MIXED_BITS.index(b) - 1]
            after = total + g * (noise[narrower][layer] - noise[b][layer])
            saved = size[layer] * (b - narrower)
            if saved > best_saved and np.all(after <= np.maximum(budget, total)):
                best, best_saved = layer, saved
        if best is None:
            break
        width[best] = MIXED_BITS[MIXED_BITS.index(width[best]) - 1]
        total = predicted()
    return total


def widths_measuring(
    groups: dict[str, list[str]],
    energy: dict[str, float],
    noise4: dict[str, float],
    gain: dict[str, Any],
    size: dict[str, int],
    budget: Any,
    fixed: set[str],
    measure_wide: Any,
    rounds: int = 3,
) -> tuple[dict[str, int], Any, dict[str, float], int]:
    """``choose_widths`` over layers (``groups``: layer -> weight names; ``fixed`` layers at 8 bits)
    from each weight's measured 4-bit noise, measuring 6-bit noise (``measure_wide(names)`` ->
    {name: relative noise}) only for the weights of layers a plan widens, and planning again on
    the measurements until every widened layer was measured (``plan_mixed``, step 4). A weight not
    measured counts its 4-bit noise times the median 6/4-bit ratio measured so far (1/16 before
    any); 8 bits count the 6-bit noise / 16. After ``rounds`` measuring passes every weight left
    is measured (the plan is then exact). Returns (layer -> bits, predicted noise per output,
    the 6-bit noises measured, passes including the 4-bit one)."""
    narrow, wide, widest = MIXED_BITS

    def relative(per_weight: dict[str, float]) -> dict[str, float]:
        """A layer's relative noise: its weights' noise energy over their energy."""
        return {
            g: sum(per_weight[n] * energy[n] for n in members) / max(sum(energy[n] for n in members), 1e-300)
            for g, members in groups.items()
        }

    names = [n for members in groups.values() for n in members]
    measured: dict[str, float] = {}
    passes = 1
    while True:
        ratios = sorted(measured[n] / noise4[n] for n in measured if noise4[n] > 0)
        ratio = ratios[len(ratios) // 2] if ratios else 1 / 16
        noise6 = {n: measured.get(n, noise4[n] * ratio) for n in names}
        noise = {
            narrow: relative(noise4),
            wide: relative(noise6),
            widest: relative({n: e / 16 for n, e in noise6.items()}),
        }
        width = {group: (widest if group in fixed else narrow) for group in groups}
        total = choose_widths(width, gain, noise, size, budget)
        wanted = [n for g in gain if width[g] > narrow for n in groups[g] if n not in measured]
        if not wanted:
            return width, total, measured, passes
        if passes > rounds:  # the estimates kept moving the plan: every weight measured, the plan exact
            wanted = [n for n in names if n not in measured]
        got = measure_wide(wanted)
        measured.update({n: got.get(n, noise4[n] * ratio) for n in wanted})  # one coremltools left: the estimate
        passes += 1


@dataclass
class MixedPlan:
    """How ``plan_mixed`` chose the widths: per output its target and the estimate its measurements
    give for the chosen widths, the executions and layers, and the layers it could not measure."""

    #: output name -> (target dB, estimated dB for the chosen widths; spectral outputs: -20·log10 distance)
    outputs: dict[str, tuple[float, float]]
    executions: int
    layers: int
    unmeasured: tuple[str, ...] = ()  # layers with a weight no executed op reads directly (kept at 8 bits)
    basis: str = ""
    #: palettizations the plan ran: every weight at 4 bits, then the widened layers' weights at 6
    passes: int = 1
    measured_wide: int = 0  # weights whose 6-bit table the plan measured

    def as_dict(self) -> dict[str, Any]:
        return {
            "outputs": {
                name: {"target_db": t, "estimated_db": round(e, 2)} for name, (t, e) in sorted(self.outputs.items())
            },
            "executions": self.executions,
            "layers": self.layers,
            "unmeasured": list(self.unmeasured),
            "passes": self.passes,
            "measured_wide": self.measured_wide,
            **({"basis": self.basis} if self.basis else {}),
        }


def plan_mixed(
    src: Path,
    kept: list[str],
    originals: dict[str, Any],
    parity_file: Path,
    progress: Any = None,
    targets: MixedTargets = MixedTargets(),
    tables: dict | None = None,
    loaded: tuple[Any, Any] | None = None,
    program: Any = None,
) -> tuple[dict[str, int], MixedPlan]:
    """Each weight's table width for the ``mixed`` compression (Apple's per-layer recipe for large
    models, executed by zoo's MIL interpreter), one width per layer (``layer_group``; the layers
    under 1 % of the weights planned as one: ``merge_small_layers``).

    1. Every weight palettized at 4 bits (one pass of the whole package): each layer's relative
       noise e(l, 4) = Σ(w - ŵ)² / Σ w² over its weights.
    2. The uncompressed package on the parity examples, then once per layer with only that
       layer's weights at 4 bits: the relative noise it puts on each output o, n(l, o). Small
       perturbations act linearly, so the layer's gain g(l, o) = n(l, o) / e(l, 4) predicts its
       noise at any width, and the noises of different layers add.
    3. Starting from 4 bits everywhere, while an output's predicted noise Σ_l g(l, o) e(l, b_l) is
       above its target (the most over it first), widen the layer that removes the most of that
       output's noise per byte added (4 -> 6 -> 8 bits).
    4. e(l, 6) is measured (a pass over those weights only) for the layers step 3 widened, and
       step 3 runs again on the measurements, until every layer it widens was measured; a layer
       not measured yet counts e(l, 4) times the median ratio e(l, 6) / e(l, 4) measured so far
       (1/16 before any: a k-means table gains ~6 dB per bit, measured 20.3 dB at 4 bits, 32.2 at
       6 on Gaussian weights, 12-14 dB more at 6 than at 4 on heavier tails: ``lut_kmeans``). At
       8 bits e(l, 6) / 16 (which spares the slowest tables). Clustering a 6-bit table costs
       twice a 4-bit one, and most layers of a component stay at 4 or 6 bits, not both; the
       final package measures every weight again.

    A spectral output's noise is its squared spectral distance (``MixedTargets.spectral``).

    The whole component is then judged at the mil level like every compressed package (its bound
    follows from the weights' own SNRs, not from this estimate).

    ``loaded``: ``src``'s (spec, coremltools program) when the caller has loaded it (the first
    pass compresses it); ``program``: ``src`` loaded by zoo's interpreter (left as it was given).
    Each saves a load (~1 s for kokoro's small predictor).
    """
    import math

    import coremltools.optimize.coreml as cto
    import numpy as np

    from ..mil import MilError, MilProgram
    from ..validation import parity

    tables = {} if tables is None else tables  # the look-up tables, for the final pass to reuse
    packed4: dict[str, Any] = {}  # each weight's 4-bit constexpr op, decompressed when its layer is measured
    energy = {name: error_energy(value, value)[1] for name, value in originals.items()}
    spec, prog = loaded if loaded is not None else _load(src)
    loaded = None
    _apply(
        prog,
        spec,
        "palette",
        cto.OptimizationConfig(
            global_config=palette_config(MIXED_BITS[0], tables), op_name_configs={name: None for name in kept}
        ),
    )
    noise4 = {name: 10 ** (-snr / 10) for name, snr in weight_snrs(prog, originals).items()}
    for fn in prog.functions.values():
        for op in fn.operations:
            name = _original_name(op)
            if op.op_type.startswith("constexpr_") and name in noise4 and name not in packed4:
                packed4[name] = op
    del prog
    names = [n for n in originals if n in noise4]
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(layer_group(name), []).append(name)

    program = MilProgram.load(src) if program is None else program
    groups = merge_small_layers(
        groups,
        {n: int(np.asarray(originals[n]).size) for n in names},
        lambda n: any(fn.const_reads.get(n) for fn in program.functions.values()),
    )
    cases = parity.load(parity_file)

    # a layer's relative noise at 4 bits: its weights' noise energy over their energy
    noise4_layer = {
        g: sum(noise4[n] * energy[n] for n in members) / max(sum(energy[n] for n in members), 1e-300)
        for g, members in groups.items()
    }

    from ..validation.metrics import spectral_distance

    # each parity case run once, keeping what it held before the first step reading each layer:
    # a layer's run repeats only the steps from there (the steps before cannot change)
    recordings = []
    room = SNAPSHOT_BYTES
    for case in cases:
        points = {program.first_read(members, case.function) for members in groups.values()} - {None}
        recordings.append(program.record(case.inputs, case.function, case.states, points, room))
        room = max(0, room - recordings[-1].bytes)

    def floats(result: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
        return [
            (k, np.asarray(result[k], np.float64)) for k in sorted(result) if np.asarray(result[k]).dtype.kind == "f"
        ]

    def outputs(members: list[str]) -> list[tuple[str, np.ndarray]]:
        got: list[tuple[str, np.ndarray]] = []
        for case, recording in zip(cases, recordings):
            start = program.first_read(members, case.function)
            got.extend(floats(recording.outputs if start is None else program.replay(recording, start)))
        return got

    def rel_noise(got: np.ndarray, want: np.ndarray, name: str) -> float:
        if targets.spectral(name):
            return spectral_distance(got, want) ** 2
        power = float(np.sum(want**2))
        return float(np.sum((got - want) ** 2)) / power if power > 0 else 0.0

    base = [item for recording in recordings for item in floats(recording.outputs)]
    keys = [k for k, _ in base]
    budget = np.array([targets.budget(k, v) for k, v in base])
    gain: dict[str, np.ndarray] = {}
    unmeasured = []
    for i, (group, members) in enumerate(groups.items()):
        if progress is not None:
            progress(i, len(groups))
        previous: dict[str, Any] = {}
        try:
            for name in members:
                previous[name] = program.substitute(name, decompress(packed4[name]))
        except MilError:  # read only inside a list argument: no single op to swap it in
            unmeasured.append(group)
        else:
            got = outputs(members)
            rel = np.array([rel_noise(g, v, k) for (k, g), (_, v) in zip(got, base)])
            gain[group] = rel / max(noise4_layer[group], 1e-30)
        for name, value in previous.items():
            program.substitute(name, value)

    size = {group: sum(int(np.asarray(originals[n]).size) for n in members) for group, members in groups.items()}

    def measure_wide(wanted: list[str]) -> dict[str, float]:
        spec, prog = _load(src)
        _apply(
            prog,
            spec,
            "palette",
            cto.OptimizationConfig(op_name_configs={name: palette_config(MIXED_BITS[1], tables) for name in wanted}),
        )
        snrs = weight_snrs(prog, {n: originals[n] for n in wanted})
        return {name: 10 ** (-snr / 10) for name, snr in snrs.items()}

    width, total, measured6, passes = widths_measuring(
        groups, energy, noise4, gain, size, budget, set(unmeasured), measure_wide
    )
    estimated: dict[str, tuple[float, float]] = {}
    for key, value, allowed in zip(keys, total, budget):  # per output name, its worst case over the examples
        db = float("inf") if value <= 0 else -10 * math.log10(value)
        target = float("inf") if allowed <= 0 else -10 * math.log10(allowed)
        so_far = estimated.get(key, (float("-inf"), float("inf")))
        estimated[key] = (round(max(target, so_far[0]), 2), min(db, so_far[1]))
    if progress is not None:
        progress(len(groups), len(groups))
    bits = {name: width[group] for group, members in groups.items() for name in members}
    return bits, MixedPlan(
        estimated,
        len(groups) - len(unmeasured) + 1,
        len(groups),
        tuple(sorted(unmeasured)),
        targets.basis,
        passes,
        len(measured6),
    )
