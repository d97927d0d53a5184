"""What a compression did to one package (``CompressionRecord``, as the registry records it) and
the gate its outputs are judged by: the SNR the outputs reach with the compression's own weight
errors at random signs (``equivalent_output_snr``), less ``MARGIN_DB``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .modes import MODES, PALETTE_FLOOR_DB
from .passes import _original_name, decompress

#: the gate on a compressed package's outputs sits this far below the SNR measured for noise of
#: the compression's own size (``equivalent_output_snr``), and never under ``OUTPUT_SNR_FLOOR_DB``.
#: Measured, the compressed package minus the same errors at random signs (worst output, dB;
#: benchmarks/bench_compress_gates.py, small architectures, random weights, 2026-12-04, signs drawn
#: per weight name): kokoro predictor w8 +1.0, p4 +2.3, mixed +0.1; pocket_tts flowlm / mimi /
#: voice_encoder w8 +3.0 / -0.6 / +0.5, p4 -0.7 / -0.4 / -1.5, mixed +2.7 / -0.1 / +0.2; vibevoice
#: lm / tts_lm / sampler / decoder w8 +0.4 / -0.4 / -1.0 / -2.5, p4 -0.0 / +0.2 / -0.5 / +3.1, mixed
#: -0.8 / +0.5 / -1.3 / +2.8. Another draw of the signs moves the basis by about a decibel (pocket_tts
#: flowlm full size, mixed: 19.2, 20.6, 21.5 dB). The unit-gain prediction beside them was up to 14 dB
#: lower (residual paths dilute), 2.4 dB higher on vibevoice's decoder at p4, and on trained Kokoro
#: 4.5 dB higher (LSTMs amplify). 3 dB (twice
#: the noise power) covers the worst shortfall, -2.5 (vibevoice's decoder at w8), with 0.5 dB left.
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


def equivalent_output_snr(
    src: Path, compressed: Any, originals: dict[str, Any], parity_file: Path, seed: int = 0, program: Any = None
) -> tuple[float, str]:
    """The least SNR (dB) of the uncompressed package's outputs against the parity examples'
    expected outputs when every compressed weight carries its own compression error with random
    signs: ``w + s ⊙ (ŵ - w)``, s = ±1 per element. Same error energy, weight by weight and element
    by element, passed through the component's own gains (a trained LSTM amplifies it, a residual
    stack dilutes it), but unrelated to the signal: what the compression should cost if its errors
    behave as noise. A weight no executed op reads directly (a list argument) cannot be swapped in:
    its noise is added with unit gain, and the basis says how many. ``program``: ``src`` already
    loaded by zoo's interpreter (its weights are swapped here and not restored)."""
    import math
    import zlib

    import numpy as np

    from ..mil import MilProgram
    from ..validation import parity
    from ..validation.metrics import compare

    program = MilProgram.load(src) if program is None else program
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
            # each weight's signs drawn from its own name: the same whatever order the program holds its
            # ops in (coremltools' passes do not keep one: flowlm's equivalent SNR came out 19.2 or 20.6 dB
            # from one run to the next), and the same in every function reading it
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            signs = rng.integers(0, 2, size=exact.shape, dtype=np.int8) * 2 - 1
            program.substitute(
                name, (exact + signs * (dense - exact)).astype(np.asarray(originals[name]).dtype), fn_name
            )
    worst = float("inf")
    for case in parity.load(parity_file):
        got = program.run_fresh(case.inputs, case.function, case.states)
        for name, want in case.outputs.items():
            if np.asarray(want).dtype.kind == "f":
                snr = compare(got[name], want)["snr_db"]
                worst = min(worst, snr if snr == snr else float("-inf"))  # non-finite outputs: no signal left
    basis = ""
    if unswapped and math.isfinite(worst):
        worst = -10 * math.log10(10 ** (-worst / 10) + sum(unswapped.values()))
        basis = f"{len(unswapped)} weight(s) no op reads directly added with unit gain"
    return worst, basis
