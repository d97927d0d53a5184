"""The MIL interpreter's two fp16 element loops against numpy's casts, on this machine.

    .venv/bin/python benchmarks/bench_fp16_casts.py [--export EXPORT_DIR]

Prints, best of five calls each (warm: the compiled loops are loaded first):
* rounding float32 results to fp16 (``round_to_fp16``) vs ``astype(float16).astype(float32)``, on
  8 M values spread over 2**-17 .. 2**6 (a seventh of them fp16 subnormals), and on 8 M normal values;
* widening fp16 to float32 (``compiled.widen_fp16``) vs ``astype(float32)``, on 34 M normal fp16
  values and, with ``--export`` (a vibevoice fp16 export's directory), on the largest weight of its
  decoder package as coremltools' loader reads it: numpy's cast speed depends on the values.
Each pair is checked equal bit for bit. The goal beside each: the compiled loop at least as fast
as numpy's cast (what it replaced).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def best(fn, *args, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def line(label: str, ours: float, numpy_s: float) -> str:
    verdict = "ok" if ours <= numpy_s else "over"
    return (
        f"{label}: compiled {ours * 1e3:.1f} ms, numpy {numpy_s * 1e3:.1f} ms ({numpy_s / ours:.1f}x; "
        f"goal: no slower than numpy: {verdict})"
    )


def decoder_weight(export: Path) -> np.ndarray:
    from zoo.core.coreml.tools import import_coremltools

    import_coremltools()
    from zoo.core.mil import program as mil_program

    largest: list[np.ndarray] = []
    widen = mil_program._widen

    def keep(value):
        if isinstance(value, np.ndarray) and value.dtype == np.float16:
            if not largest or value.size > largest[0].size:
                largest[:] = [value]  # as the loader gives it (not a copy: its layout is part of the cost)
        return widen(value)

    mil_program._widen = keep
    try:
        mil_program.MilProgram.load(export / "decoder.mlpackage")
    finally:
        mil_program._widen = widen
    return largest[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, help="a vibevoice fp16 export: widen its decoder's largest weight")
    args = parser.parse_args()
    from zoo.core.mil import compiled
    from zoo.core.mil.program import round_to_fp16

    rng = np.random.default_rng(0)
    round_to_fp16(np.ones(4, np.float32))
    compiled.widen_fp16(np.ones(4, np.float16))
    wide = (rng.standard_normal(8_000_000) * np.exp2(rng.uniform(-17, 6, 8_000_000))).astype(np.float32)
    normal = rng.standard_normal(8_000_000).astype(np.float32)
    with np.errstate(over="ignore"):
        for label, values in (("rounding 8 M values over 2**-17..2**6", wide), ("rounding 8 M normal values", normal)):
            assert np.array_equal(round_to_fp16(values), values.astype(np.float16).astype(np.float32))
            ours = best(round_to_fp16, values)
            theirs = best(lambda v: v.astype(np.float16).astype(np.float32), values)
            print(line(label, ours, theirs))
    cases = [("widening 34 M normal fp16 values", (rng.standard_normal(34_000_000) * 0.05).astype(np.float16))]
    if args.export:
        weight = decoder_weight(args.export)
        cases.append((f"widening vibevoice's decoder weight {list(weight.shape)}", weight))
    for label, values in cases:
        got = compiled.widen_fp16(values)
        assert np.array_equal(got.view(np.uint32), values.astype(np.float32).view(np.uint32))
        del got
        ours = best(compiled.widen_fp16, values)
        theirs = best(lambda v: v.astype(np.float32), values)
        print(line(label, ours, theirs))


if __name__ == "__main__":
    main()
