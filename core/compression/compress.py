"""Post-training weight compression of a saved package (``coremltools.optimize.coreml``).

A variant's ``compression`` names a mode (``COMPRESSIONS``); ``compress_package`` applies it to
the converted package — every function of a multifunction package, each shared weight
compressed once — and saves a new package whose weights are constexpr ops (int8 with a
per-channel scale, or a look-up table of 2^bits values per group of 16 output channels), which
zoo's MIL interpreter executes (``core/mil/compression.py``) like any other op.

Weights a plugin declares uncompressed (``ComponentSpec.uncompressed``: regular expressions
on the weight constants' names, which coremltools derives from the torch parameter paths)
stay as they are, with the plugin's measured reason next to the declaration.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

COMPRESSION_FILE = "compression.json"
from ..plugin.names import COMPRESSION_TARGETS, COMPRESSIONS  # noqa: E402,F401  (every compression a variant can name)

#: weights smaller than this stay as they are (coremltools' default threshold: biases, norms)
WEIGHT_THRESHOLD = 2048
#: output channels sharing one look-up table (per-grouped-channel palettization: iOS18)
GROUP_SIZE = 16
#: distinct values of a group a look-up table's optimal 1-D k-means runs on (see ``lut_kmeans``)
KMEANS_BINS = 512


@dataclass(frozen=True)
class Mode:
    name: str
    bits: int
    kind: str  # linear | palette
    #: the lowest deployment target whose ops the mode emits
    target: str
    description: str
    #: every compressed weight must decompress at least this close to the original (SNR, dB):
    #: 10 dB under what the mode gives Gaussian weights (int8 per channel: ~42 dB; optimal 6- and
    #: 4-bit tables: 31 and 20 dB), room for trained weights' heavier tails; a shuffled or
    #: misindexed table decompresses at 0 dB or less. Measured worst, random weights, small
    #: pocket_tts: w8 41.6 dB, p4 19.8 dB.
    weight_snr_floor_db: float


#: the least SNR (dB) a weight palettized at each width must decompress at: 10 dB under what an
#: optimal table gives Gaussian weights (measured with ``lut_kmeans``, 16 x 1024 values: 44.4 dB
#: at 8 bits, 32.2 at 6, 20.3 at 4), room for trained weights' heavier tails
PALETTE_FLOOR_DB = {8: 33.0, 6: 21.0, 4: 10.0}
#: the ``mixed`` compression's widths, narrowest first
MIXED_BITS = (4, 6, 8)
#: what ``mixed`` aims at: every output of the component within this SNR (dB) of the uncompressed
#: package's, on the parity examples — output noise power 1% of the signal, between what uniform
#: tables give full-size pocket_tts (p6: 23.7-25.7 dB, p4: 9.7-14.7 dB; w8: 32.7-34.7 dB)
MIXED_TARGET_DB = 20.0
#: outputs the host rounds to integers (kokoro's durations) are planned by their margin to the
#: rounding boundary (``integer_noise_budget``): the noise whose expected flips move them by half of
#: what the gate allows (validation.metrics.INTEGER_TEMPO). An SNR target cannot do it: a trained duration a
#: hair from a boundary flips under any noise (trained Kokoro-82M, mixed at 50 dB: 19 flipped).
#: Half: room for the planner's linear estimate (measured, small kokoro: within 1 dB of the package).
INTEGER_PLAN_SHARE = 0.5
#: and the expected number of elements moved by more than one kept under this
INTEGER_PLAN_JUMPS = 0.05

MODES = {
    "w8": Mode(
        "w8", 8, "linear", COMPRESSION_TARGETS["w8"], "int8 weights, symmetric, one scale per output channel", 32.0
    ),
    "p6": Mode(
        "p6",
        6,
        "palette",
        COMPRESSION_TARGETS["p6"],
        f"6-bit look-up table (64 values, 1-D k-means) per group of {GROUP_SIZE} output channels",
        21.0,
    ),
    "p4": Mode(
        "p4",
        4,
        "palette",
        COMPRESSION_TARGETS["p4"],
        f"4-bit look-up table (16 values, 1-D k-means) per group of {GROUP_SIZE} output channels",
        10.0,
    ),
    "mixed": Mode(
        "mixed",
        0,
        "mixed",
        COMPRESSION_TARGETS["mixed"],
        f"look-up tables of 8, 6 or 4 bits per weight, the narrowest its measured effect on the outputs allows "
        f"(outputs >= {MIXED_TARGET_DB:g} dB SNR)",
        0.0,
    ),
}


#: the gate on a compressed package's outputs sits this far below the SNR measured for noise of
#: the compression's own size (``equivalent_output_snr``), and never under ``OUTPUT_SNR_FLOOR_DB``.
#: Measured, the compressed package minus the same errors at random signs (worst output, dB;
#: benchmarks/bench_compress_gates.py, small architectures, random weights): kokoro predictor
#: w8 +0.9 (full size: +3.1), p4 +0.9, mixed +1.3; pocket_tts flowlm / mimi / voice_encoder w8 +2.5 / -1.2 / +1.2,
#: p4 -0.3 / +0.4 / -1.3, mixed +3.0 / -0.1 / +3.4; tiny vocoder w8 -0.7. The unit-gain prediction
#: beside them was 1 to 10 dB lower (residual paths dilute) and, on trained Kokoro, 4.5 dB higher
#: (LSTMs amplify). 3 dB (twice the noise power) is more than twice the worst shortfall, -1.3.
MARGIN_DB = 3.0
#: an output noisier than its signal is not the component any more; a shuffled look-up table
#: gives -3 to -4.4 dB (its outputs as strong as the right ones, and unrelated to them)
OUTPUT_SNR_FLOOR_DB = 0.0


@dataclass(frozen=True)
class CompressionRecord:
    """What a compression did to one package, as the registry records it.

    ``weight_snr_db``: per compressed weight, 10·log10(Σ w² / Σ (w - ŵ)²) of the decompressed
    weight ŵ (executed by zoo's kernels from the saved constexpr op) against the original.
    """

    mode: str
    weight_snr_db: tuple[tuple[str, float], ...]
    kept: tuple[str, ...]  # weight constants the plugin keeps uncompressed
    bytes_before: int
    bytes_after: int
    left: tuple[str, ...] = ()  # weights coremltools could not compress in this mode (left as they were)
    #: ``mixed``: each compressed weight's table width, and how they were chosen (``MixedPlan.as_dict``)
    bits: tuple[tuple[str, int], ...] = ()
    plan: dict[str, Any] | None = None

    def floor_db(self, name: str) -> float:
        if self.mode == "mixed":
            return PALETTE_FLOOR_DB[dict(self.bits)[name]]
        return MODES[self.mode].weight_snr_floor_db

    #: the outputs' least SNR (dB, against the parity examples' expected outputs) with every
    #: compressed weight's error applied with random signs (``equivalent_output_snr``): what noise
    #: of the compression's size does through this component's own gains; None: not measured
    output_snr_db: float | None = None
    output_basis: str = ""

    @property
    def predicted_snr_db(self) -> float:
        """Output SNR if every compressed weight added its relative noise to the output with unit
        gain: -10·log10 Σ 10^(-snr_i/10). Recorded for reference only: trained components amplify
        weight noise (kokoro's LSTM predictor, w8: 22.3 dB measured, 26.8 predicted), so the gate
        is ``output_snr_db``, measured through the component's own gains."""
        import math

        noise = sum(10 ** (-snr / 10) for _, snr in self.weight_snr_db)
        return float("inf") if noise == 0 else -10 * math.log10(noise)

    def broken(self) -> str:
        """Why the compression is broken (a weight decompresses under its mode's floor), or ""."""
        under = [(name, snr) for name, snr in self.weight_snr_db if snr < self.floor_db(name)]
        if not under:
            return ""
        name, snr = min(under, key=lambda b: b[1] - self.floor_db(b[0]))
        return (
            f"{len(under)} weight(s) decompress under their {self.mode} floor (worst {name}: {snr:.1f} dB, "
            f"floor {self.floor_db(name):g} dB): the compression is broken"
        )

    def bound(self) -> tuple[float, str]:
        """The least output SNR the package must reach, and its basis; +inf (a bound nothing
        meets) when a weight decompresses under its mode's floor: the compression is broken."""
        worst = min((snr for _, snr in self.weight_snr_db), default=float("inf"))
        broken = self.broken()
        if broken:
            return float("inf"), broken
        if self.output_snr_db is None:
            return float(
                "inf"
            ), "the outputs' response to the compression's noise was not measured: nothing to judge by"
        basis = (
            f"{MARGIN_DB:g} dB under the {self.output_snr_db:.1f} dB the outputs reach with the "
            f"{len(self.weight_snr_db)} compressed "
            f"weights' own errors at random signs (worst weight {worst:.1f} dB; "
            f"{self.mode}){'; ' + self.output_basis if self.output_basis else ''}"
        )
        if self.output_snr_db - MARGIN_DB < OUTPUT_SNR_FLOOR_DB:
            return OUTPUT_SNR_FLOOR_DB, f"the {OUTPUT_SNR_FLOOR_DB:g} dB floor, above {basis}"
        return self.output_snr_db - MARGIN_DB, basis

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "compressed_weights": len(self.weight_snr_db),
            "worst_weight_snr_db": round(min((snr for _, snr in self.weight_snr_db), default=float("inf")), 2),
            "predicted_snr_db": round(self.predicted_snr_db, 2),
            **({"output_snr_db": round(self.output_snr_db, 2)} if self.output_snr_db is not None else {}),
            **({"output_basis": self.output_basis} if self.output_basis else {}),
            "kept": list(self.kept),
            "left": list(self.left),
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            **({"bits": dict(self.bits)} if self.bits else {}),
            **({"plan": self.plan} if self.plan else {}),
        }

    def save(self, path: Path) -> None:
        import json

        path.write_text(json.dumps({**self.as_dict(), "weight_snr_db": dict(self.weight_snr_db)}, indent=1))

    @classmethod
    def load(cls, path: Path) -> "CompressionRecord":
        import json

        data = json.loads(path.read_text())
        return cls(
            data["mode"],
            tuple(data["weight_snr_db"].items()),
            tuple(data["kept"]),
            data["bytes_before"],
            data["bytes_after"],
            tuple(data["left"]),
            tuple(data.get("bits", {}).items()),
            data.get("plan"),
            data.get("output_snr_db"),
            data.get("output_basis", ""),
        )


def lut_kmeans(values: Any, bits: int, tables: dict | None = None) -> tuple[Any, Any]:
    """A look-up table of 2^bits values for one group of weights, and each weight's index in it.
    ``tables`` (one compression's store, by bits, dtype and a digest of the group's values):
    a group seen before gets its table again, without clustering.

    coremltools' own k-means (the exact 1-D dynamic programme of ``kmeans1d`` over every distinct
    value) takes ~0.1 s per group of 16 x 1024 fp16 weights: ~12 min for pocket_tts at 6 bits on
    one core. Here the same exact programme runs on ``KMEANS_BINS`` weighted points (the group's
    sorted distinct values cut at equal counts and at equal widths, so the tails keep their
    resolution), and Lloyd's iterations over the exact values refine it. Measured against
    coremltools' k-means, groups of 16 x 1024 (16 x 4096 for Student-t), SNR / time:
    Gaussian 6-bit 32.20 / 32.24 dB, 7.9 / 104 ms; Laplace 6-bit 30.67 / 30.69 dB; Student-t(3)
    6-bit 27.82 / 27.83 dB, 11 / 185 ms; 4-bit equal to 0.01 dB in 3.6-8 ms / 27-52 ms.
    """
    import hashlib

    import numpy as np

    flat = np.asarray(values).reshape(-1)
    size = 1 << bits
    if tables is None:
        return _lut_kmeans(flat, size)
    key = (bits, flat.dtype.str, hashlib.blake2b(flat.tobytes(), digest_size=16).digest())
    if key in tables:
        lut = tables[key]
        return lut, _nearest(flat, lut)
    lut, index = _lut_kmeans(flat, size)
    tables[key] = lut
    return lut, index


def _nearest(flat: Any, lut: Any) -> Any:
    """Each value's index of the table entry nearest to it (ties to the larger entry)."""
    import numpy as np

    order = np.argsort(lut, kind="stable")
    stored = lut[order].astype(np.float64)
    return order[np.searchsorted((stored[:-1] + stored[1:]) / 2, flat.astype(np.float64), side="right")].astype(
        np.uint8
    )


def _distinct(flat: Any) -> tuple[Any, Any, Any]:
    """``np.unique(flat, return_inverse=True, return_counts=True)`` (inverse flat). For fp16, by
    counting the 65,536 bit patterns instead of sorting: 0.34 ms instead of 4.5 ms for a group of
    16 x 1536 weights, a third of a table's time (-0 counted as 0, as np.unique does; a group
    holding a NaN takes np.unique)."""
    import numpy as np

    if flat.dtype != np.float16:
        distinct, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        return distinct, inverse.reshape(-1), counts
    codes = flat.view(np.uint16)
    counts_all = np.bincount(codes, minlength=1 << 16)
    if counts_all[0x7C01:0x8000].any() or counts_all[0xFC01:].any():  # NaN patterns
        distinct, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        return distinct, inverse.reshape(-1), counts
    counts_all[0] += counts_all[0x8000]  # -0 is 0
    counts_all[0x8000] = 0
    present = np.flatnonzero(counts_all)
    order = np.argsort(present.astype(np.uint16).view(np.float16), kind="stable")
    ranked = present[order]
    rank = np.zeros(1 << 16, np.intp)
    rank[ranked] = np.arange(len(ranked))
    rank[0x8000] = rank[0]
    return ranked.astype(np.uint16).view(np.float16), rank[codes], counts_all[ranked]


def _lut_kmeans(flat: Any, size: int) -> tuple[Any, Any]:
    import numpy as np

    # the weighted build of kmeans1d coremltools ships for its own k-means (the PyPI release
    # takes no weights); coremltools is pinned, so this private path is stable for zoo
    from coremltools._deps import kmeans1d

    distinct, inverse, counts = _distinct(flat)
    m = len(distinct)
    if m <= size:
        lut = np.zeros(size, flat.dtype)
        lut[:m] = distinct
        return lut, inverse.astype(np.uint8)
    x = distinct.astype(np.float64)
    if m > KMEANS_BINS:
        half = KMEANS_BINS // 2
        cuts = np.union1d(x[(np.arange(1, half) * m) // half], np.linspace(x[0], x[-1], half + 1)[1:-1])
        b = np.searchsorted(cuts, x)
        weight = np.bincount(b, weights=counts)
        used = weight > 0
        points, weight = np.bincount(b, weights=counts * x)[used] / weight[used], weight[used]
    else:
        points, weight = x, counts.astype(np.float64)
    centroids = np.asarray(kmeans1d.cluster(points, size, weights=weight).centroids, np.float64)
    # Lloyd's iterations on the exact values, as prefix sums over the sorted distinct values
    mass = np.concatenate([[0], np.cumsum(counts)])
    moment = np.concatenate([[0.0], np.cumsum(counts * x)])
    cuts = None
    for _ in range(300):
        new = np.searchsorted(x, (centroids[:-1] + centroids[1:]) / 2)
        if cuts is not None and np.array_equal(new, cuts):
            break
        cuts = new
        edges = np.concatenate([[0], cuts, [m]])
        n = mass[edges[1:]] - mass[edges[:-1]]
        centroids = np.where(n > 0, (moment[edges[1:]] - moment[edges[:-1]]) / np.maximum(n, 1), centroids)
    # each weight indexes the table entry nearest to it as stored (in the weights' dtype)
    lut = centroids.astype(flat.dtype)
    return lut, _nearest(flat, lut)


def op_config(mode: Mode, tables: dict) -> Any:
    import coremltools.optimize.coreml as cto

    if mode.kind == "linear":
        return cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
        )
    return palette_config(mode.bits, tables)


def palette_config(bits: int, tables: dict) -> Any:
    """Look-up tables of ``bits`` per group of ``GROUP_SIZE`` output channels, by ``lut_kmeans``.
    ``tables``: one compression's store of tables — coremltools compresses each function's copy of
    a weight the functions share (kokoro's predictor: 5 functions), and ``mixed`` palettizes every
    weight at 4 and 6 bits before its final pass: the same groups, whose k-means is most of a
    compression's time, come back."""
    import functools

    import coremltools.optimize.coreml as cto

    return cto.OpPalettizerConfig(
        mode="custom",
        lut_function=functools.partial(lut_kmeans, bits=bits, tables=tables),
        granularity="per_grouped_channel",
        group_size=GROUP_SIZE,
        weight_threshold=WEIGHT_THRESHOLD,
    )


def _weight_consts(prog: Any) -> list[Any]:
    """The float constants large enough to be compressed, once per name (functions share them)."""
    import numpy as np

    seen: dict[str, Any] = {}
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type != "const" or op.name in seen:
                continue
            val = op.outputs[0].val
            if (
                isinstance(val, np.ndarray)
                and val.dtype.kind == "f"
                and val.size > WEIGHT_THRESHOLD
                and op.outputs[0].child_ops
            ):
                seen[op.name] = op
    return list(seen.values())


def _load(src: Path) -> tuple[Any, Any]:
    """(spec, MIL program) of a saved package."""
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    from ..coreml.tools import import_coremltools, load_package_spec

    import_coremltools()
    spec = load_package_spec(src)
    return spec, load_milproto(
        spec, spec.specificationVersion, file_weights_dir=str(src / "Data" / "com.apple.CoreML" / "weights")
    )


def _apply(prog: Any, spec: Any, kind: str, config: Any) -> None:
    """Run coremltools' compression pass over every function of ``prog`` (its public API refuses
    multifunction programs), then store each weight the functions share once."""
    from coremltools.converters.mil.mil.passes.graph_pass import PassOption
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY

    graph_pass = PASS_REGISTRY[
        "compression::linear_quantize_weights" if kind == "linear" else "compression::palettize_weights"
    ]
    graph_pass.set_options([PassOption("config", config), PassOption("joint_compression", False)])
    graph_pass.apply(prog)
    if len(prog.functions) > 1:  # each function compressed its copy of a shared weight: store it once
        PASS_REGISTRY["common::const_deduplication"]._deduplicate_const_across_functions(prog)
        prog.export_as_multifunction = True
        prog.default_function_name = spec.description.defaultFunctionName or next(iter(prog.functions))
    prog.skip_all_passes = True


def integer_noise_budget(values: Any, rounding: str, tempo: float | None = None) -> float:
    """The relative noise power (Σ n² / Σ v²) an integer output ``values`` (before ``rounding``) may
    carry: the largest Gaussian noise σ (in the output's own units, where the rounding boundaries
    are) whose expected flips Σ_i Q(m_i / σ) — m_i the distance of value i to its nearest rounding
    boundary — move the rounded values by at most INTEGER_PLAN_SHARE of what the gate allows (the
    Σ|Δ| a ±tempo change makes, ``validation.integer_moves``), and whose expected moves by more than
    one Σ_i Q((m_i + 1) / σ) stay under INTEGER_PLAN_JUMPS."""
    import math

    import numpy as np

    from ..validation.metrics import INTEGER_TEMPO, ROUNDINGS

    tempo = INTEGER_TEMPO if tempo is None else tempo
    e = np.asarray(values, np.float64).reshape(-1)
    power = float(np.sum(e**2))
    if e.size == 0 or power == 0 or not np.isfinite(e).all():
        return 0.0
    r = ROUNDINGS[rounding]
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
        return self.spectral_db if self.spectral_db is not None else MIXED_TARGET_DB


def compress_package(
    src: Path,
    dst: Path,
    mode_name: str,
    uncompressed: Iterable[str] = (),
    parity_file: Path | None = None,
    progress: Any = None,
    targets: MixedTargets = MixedTargets(),
    measure: bool = True,
) -> CompressionRecord:
    """Compress ``src`` into a new package at ``dst`` (``src`` is only read). ``mixed`` measures each
    weight's effect on the outputs on the parity examples in ``parity_file`` against ``targets``;
    ``progress(done, total)`` follows its executions. With ``measure`` (and a ``parity_file``) the
    record carries the outputs' SNR under noise of the compression's size (the gate's basis)."""
    import coremltools.optimize.coreml as cto

    from ..util.hashing import tree_size

    mode = MODES[mode_name]
    tables: dict = {}  # each group's look-up table, clustered once (palette_config)
    spec, prog = _load(src)
    keep = [re.compile(p) for p in uncompressed]
    consts = _weight_consts(prog)
    kept = sorted(op.name for op in consts if any(k.search(op.name) for k in keep))
    originals = {op.name: op.outputs[0].val for op in consts if op.name not in kept}
    bits: dict[str, int] = {}
    plan = None
    if mode.kind == "mixed":
        if parity_file is None:
            raise ValueError("the mixed compression measures each weight on the parity examples: pass parity_file")
        del prog, consts  # the plan loads its own copies
        bits, plan = plan_mixed(src, kept, originals, parity_file, progress, targets, tables)
        spec, prog = _load(src)
        config = cto.OptimizationConfig(
            op_name_configs={
                **{name: palette_config(b, tables) for name, b in bits.items()},
                **{name: None for name in kept},
            }
        )
        _apply(prog, spec, "palette", config)
    else:
        _apply(
            prog,
            spec,
            mode.kind,
            cto.OptimizationConfig(
                global_config=op_config(mode, tables), op_name_configs={name: None for name in kept}
            ),
        )
    snrs = weight_snrs(prog, originals)
    measured, measured_basis = (
        equivalent_output_snr(src, prog, originals, parity_file)
        if measure and parity_file is not None and snrs
        else (None, "")
    )
    _save(prog, spec, max(spec.specificationVersion, {"iOS16": 7, "iOS17": 8, "iOS18": 9}[mode.target]), dst)
    # coremltools leaves a weight whose shape its mode cannot take (e.g. fewer output channels than
    # a group) as it was, with a warning: recorded as such, never counted as compressed
    left = tuple(sorted(set(originals) - set(snrs)))
    return CompressionRecord(
        mode.name,
        tuple(sorted(snrs.items())),
        tuple(kept),
        tree_size(src),
        tree_size(dst),
        left,
        tuple(sorted((n, b) for n, b in bits.items() if n in snrs)),
        plan.as_dict() if plan else None,
        measured,
        measured_basis,
    )


def layer_group(name: str) -> str:
    """The layer a weight constant belongs to: its name up to the first layer number (coremltools
    names constants after torch parameter paths: ``transformer_layers_3_self_attn_out_proj_weight``
    -> ``transformer_layers_3``); a name without one is its own group."""
    match = re.match(r"^(.*?_\d+)(?:_|$)", name)
    return match.group(1) if match else name


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "outputs": {
                name: {"target_db": t, "estimated_db": round(e, 2)} for name, (t, e) in sorted(self.outputs.items())
            },
            "executions": self.executions,
            "layers": self.layers,
            "unmeasured": list(self.unmeasured),
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
) -> tuple[dict[str, int], MixedPlan]:
    """Each weight's table width for the ``mixed`` compression (Apple's per-layer recipe for large
    models, executed by zoo's MIL interpreter), one width per layer (``layer_group``).

    1. Every weight palettized at 4 and 6 bits (two passes of the whole package): each layer's
       relative noise e(l, b) = Σ(w - ŵ)² / Σ w² over its weights; at 8 bits e(l, 6) / 16 (a
       k-means table gains ~6 dB per bit: measured 20.3 dB at 4 bits, 32.2 dB at 6 on Gaussian
       weights), which spares the slowest pass; the final package measures every weight again.
    2. The uncompressed package on the parity examples, then once per layer with only that
       layer's weights at 4 bits: the relative noise it puts on each output o, n(l, o). Small
       perturbations act linearly, so the layer's gain g(l, o) = n(l, o) / e(l, 4) predicts its
       noise at any width, and the noises of different layers add.
    3. Starting from 4 bits everywhere, while an output's predicted noise Σ_l g(l, o) e(l, b_l) is
       above its target (the most over it first), widen the layer that removes the most of that
       output's noise per byte added (4 -> 6 -> 8 bits).

    A spectral output's noise is its squared spectral distance (``MixedTargets.spectral``).

    The whole component is then judged at the mil level like every compressed package (its bound
    follows from the weights' own SNRs, not from this estimate).
    """
    import math

    import coremltools.optimize.coreml as cto
    import numpy as np

    from ..mil import MilError, MilProgram
    from ..validation import parity

    tables = {} if tables is None else tables  # the look-up tables, for the final pass to reuse
    noise: dict[int, dict[str, float]] = {}
    packed4: dict[str, Any] = {}  # each weight's 4-bit constexpr op, decompressed when its layer is measured
    energy = {name: float(np.sum(np.asarray(value, np.float64) ** 2)) for name, value in originals.items()}
    for b in MIXED_BITS[:-1]:
        spec, prog = _load(src)
        _apply(
            prog,
            spec,
            "palette",
            cto.OptimizationConfig(
                global_config=palette_config(b, tables), op_name_configs={name: None for name in kept}
            ),
        )
        noise[b] = {name: 10 ** (-snr / 10) for name, snr in weight_snrs(prog, originals).items()}
        if b == MIXED_BITS[0]:
            for fn in prog.functions.values():
                for op in fn.operations:
                    name = _original_name(op)
                    if op.op_type.startswith("constexpr_") and name in noise[b] and name not in packed4:
                        packed4[name] = op
        del prog
    noise[MIXED_BITS[-1]] = {name: e / 16 for name, e in noise[MIXED_BITS[-2]].items()}
    names = [n for n in originals if all(n in noise[b] for b in MIXED_BITS)]
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(layer_group(name), []).append(name)
    # a layer's relative noise: its weights' noise energy over their energy
    layer_noise = {
        b: {
            g: sum(noise[b][n] * energy[n] for n in members) / max(sum(energy[n] for n in members), 1e-300)
            for g, members in groups.items()
        }
        for b in MIXED_BITS
    }

    program = MilProgram.load(src)
    cases = parity.load(parity_file)

    from ..validation.metrics import spectral_distance

    def outputs() -> list[tuple[str, np.ndarray]]:
        got = []
        for case in cases:
            fn = program.function(case.function)
            state = program.make_state(case.function, initial=case.states) if fn.states else None
            result = program.run(case.inputs, case.function, state)
            got.extend(
                (k, np.asarray(result[k], np.float64))
                for k in sorted(result)
                if np.asarray(result[k]).dtype.kind == "f"
            )
        return got

    def rel_noise(got: np.ndarray, want: np.ndarray, name: str) -> float:
        if targets.spectral(name):
            return spectral_distance(got, want) ** 2
        power = float(np.sum(want**2))
        return float(np.sum((got - want) ** 2)) / power if power > 0 else 0.0

    base = outputs()
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
            got = outputs()
            rel = np.array([rel_noise(g, v, k) for (k, g), (_, v) in zip(got, base)])
            gain[group] = rel / max(layer_noise[4][group], 1e-30)
        for name, value in previous.items():
            program.substitute(name, value)

    width = {group: (MIXED_BITS[-1] if group in unmeasured else MIXED_BITS[0]) for group in groups}
    size = {group: sum(int(np.asarray(originals[n]).size) for n in members) for group, members in groups.items()}
    noise = layer_noise

    total = choose_widths(width, gain, noise, size, budget)
    estimated: dict[str, tuple[float, float]] = {}
    for key, value, allowed in zip(keys, total, budget):  # per output name, its worst case over the examples
        db = float("inf") if value <= 0 else -10 * math.log10(value)
        target = float("inf") if allowed <= 0 else -10 * math.log10(allowed)
        previous = estimated.get(key, (float("-inf"), float("inf")))
        estimated[key] = (round(max(target, previous[0]), 2), min(db, previous[1]))
    if progress is not None:
        progress(len(groups), len(groups))
    bits = {name: width[group] for group, members in groups.items() for name in members}
    return bits, MixedPlan(
        estimated, len(groups) - len(unmeasured) + 1, len(groups), tuple(sorted(unmeasured)), targets.basis
    )


def equivalent_output_snr(
    src: Path, compressed: Any, originals: dict[str, Any], parity_file: Path, seed: int = 0
) -> tuple[float, str]:
    """The least SNR (dB) of the uncompressed package's outputs against the parity examples'
    expected outputs when every compressed weight carries its own compression error with random
    signs: ``w + s ⊙ (ŵ - w)``, s = ±1 per element. Same error energy, weight by weight and element
    by element, passed through the component's own gains (a trained LSTM amplifies it, a residual
    stack dilutes it), but unrelated to the signal: what the compression should cost if its errors
    behave as noise. A weight no executed op reads directly (a list argument) cannot be swapped in:
    its noise is added with unit gain, and the basis says how many."""
    import math

    import numpy as np

    from ..mil import MilProgram
    from ..validation import parity
    from ..validation.metrics import compare

    rng = np.random.default_rng(seed)
    program = MilProgram.load(src)
    unswapped: dict[str, float] = {}
    # function by function: a constant of one name can hold another value in each function (a
    # position table cut to each token bucket), and each is compressed on its own
    for fn_name, fn in compressed.functions.items():
        for op in fn.operations:
            name = _original_name(op)
            if not op.op_type.startswith("constexpr_") or name not in originals:
                continue
            dense = np.asarray(decompress(op), np.float64)
            read = program.constant(name, fn_name) if fn_name in program.functions else None
            if read is None or np.shape(read) != dense.shape:  # read only inside a list argument: no op to swap it in
                exact = np.asarray(originals[name], np.float64)
                energy = float(np.sum(exact**2))
                unswapped[name] = (
                    float(np.sum((dense.reshape(exact.shape) - exact) ** 2)) / energy if energy > 0 else 0.0
                )
                continue
            exact = np.asarray(read, np.float64)
            signs = rng.integers(0, 2, size=exact.shape, dtype=np.int8) * 2 - 1
            program.substitute(
                name, (exact + signs * (dense - exact)).astype(np.asarray(originals[name]).dtype), fn_name
            )
    worst = float("inf")
    for case in parity.load(parity_file):
        fn = program.function(case.function)
        state = program.make_state(case.function, initial=case.states) if fn.states else None
        got = program.run(case.inputs, case.function, state)
        for name, want in case.outputs.items():
            if np.asarray(want).dtype.kind == "f":
                snr = compare(got[name], want)["snr_db"]
                worst = min(worst, snr if snr == snr else float("-inf"))  # non-finite outputs: no signal left
    basis = ""
    if unswapped and math.isfinite(worst):
        worst = -10 * math.log10(10 ** (-worst / 10) + sum(unswapped.values()))
        basis = f"{len(unswapped)} weight(s) no op reads directly added with unit gain"
    return worst, basis


def _save(prog: Any, spec: Any, version: int, dst: Path) -> None:
    from coremltools.converters.mil.converter import mil_convert

    from ..coreml.tools import import_coremltools

    ct = import_coremltools()
    model = mil_convert(
        prog,
        convert_to="mlprogram",
        convert_from="milinternal",
        specification_version=version,
        compute_units=ct.ComputeUnit.CPU_ONLY,
        model_description=spec.description,
        skip_model_load=True,
    )
    if dst.exists():
        shutil.rmtree(dst)
    model.save(str(dst))


def _original_name(op: Any) -> str:
    """The weight constant a compressed (constexpr) op stands for: coremltools names it after it."""
    return re.sub(r"_(palettized|quantized)$", "", op.name)


def decompress(op: Any) -> Any:
    """A constexpr op's dense weight, by zoo's own kernels (what the MIL interpreter executes)."""
    from ..mil import KERNELS

    return KERNELS[op.op_type](**{param: var.val for param, var in op.inputs.items()})


def weight_snrs(prog: Any, originals: dict[str, Any]) -> dict[str, float]:
    """Per compressed weight (named as its original constant), the SNR of its decompression by
    zoo's kernels against the original values."""
    import math

    import numpy as np

    out: dict[str, float] = {}
    for fn in prog.functions.values():
        for op in fn.operations:
            if not op.op_type.startswith("constexpr_"):
                continue
            name = _original_name(op)
            if name not in originals or name in out:
                continue
            dense = np.asarray(decompress(op), np.float64)
            want = np.asarray(originals[name], np.float64)
            noise, signal = float(np.sum((dense - want) ** 2)), float(np.sum(want**2))
            out[name] = 999.0 if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise)
    return out
