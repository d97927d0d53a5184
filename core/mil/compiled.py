"""The interpreter's element work that numpy can only do in several whole-array passes (each
reading and writing the tensor again), done in one pass by compiled loops (``loops``, numba):
fp16 rounding, fp16 widening, exact GELU and its tanh approximation (each numpy's formula bit for
bit), and the product with weights kept as fp16 (``half``).

``loops`` (numba) is imported by the first call here, not with ``zoo.core.mil``.
Imports numpy, ``loops`` and ``threads`` (splitting the rounding and GELU of large arrays).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np


def _loops() -> ModuleType:
    from . import loops

    return loops


#: from this many values on, rounding is split between threads (``threads``): measured on 2 cores
#: (2026-12-05, warm output): 1 M values 0.50 -> 0.39 ms, 4 M 1.94 -> 1.08 ms; 256 K 0.12 -> 0.14 ms
SPLIT_ROUNDING = 1 << 20
#: from this many values on, exact GELU is split (erf is most of its cost): 256 K values 2.0 -> 1.1 ms
SPLIT_GELU = 1 << 16


def round_into(src: np.ndarray, dst: np.ndarray) -> bool:
    """Round the contiguous float32 ``src`` into ``dst`` (same size; may be ``src``); whether every
    rounded value is finite (from the same pass: the largest magnitude's float32 bits). Each value
    is rounded by itself: the same bits however the work is split."""
    from .threads import even_bounds, run_split

    loops = _loops()
    flat_src, flat_dst = src.reshape(-1), dst.reshape(-1)
    bounds = even_bounds(flat_src.size, SPLIT_ROUNDING)
    peaks = run_split(bounds, lambda a, b: loops.round_loop(flat_src[a:b], flat_dst[a:b]))
    return bool(max(peaks) < loops.OVERFLOW)


def widen_fp16(value: np.ndarray) -> np.ndarray:
    """fp16 -> float32, a new array: each value looked up by its bits in a 256 KB table.

    Measured (benchmarks/bench_fp16_casts.py, 2026-12-04, 2 idle cores): 34 M values in 34 ms, numpy's
    cast 55 ms; numpy's cast of a weight as coremltools' loader returns it took up to 178 ms. Most of
    what a package's load spends here is the new float32 memory's first touch (vibevoice's decoder:
    1.4 GB); the four vibevoice packages loaded in 5.6-6.1 s instead of 8.0-9.4 s."""
    source = np.ascontiguousarray(value)
    out = np.empty(np.shape(value), np.float32)
    loops = _loops()
    loops.widen_loop(source.reshape(-1).view(np.uint16), loops.FP16_TO_FP32, out.reshape(-1).view(np.uint32))
    return out


def finite_fp16(value: np.ndarray) -> bool:
    """Is every value of the fp16 array ``value`` finite? One pass over its bits (no float copy)."""
    bits = np.ascontiguousarray(value).reshape(-1).view(np.uint16)
    return bool(_loops().half_peak(bits) != 0x7C00)


def gelu_exact(x: np.ndarray) -> np.ndarray:
    """``0.5 * x * (1 + erf(x / sqrt 2))`` for a float32 array, each step in float32 as numpy
    evaluates the formula, erf in float64 rounded to float32 (as scipy's float32 erf does): the
    same bits (tests/mil/test_mil_ops.py), in one pass instead of four. Measured on 6 M values
    (2026-12-04, idle): 86 ms, the numpy formula 140 ms (erf itself is most of either)."""
    from .threads import even_bounds, run_split

    source = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(np.shape(x), np.float32)
    flat, loop = out.reshape(-1), _loops().gelu_loop
    run_split(even_bounds(source.size, SPLIT_GELU), lambda a, b: loop(source[a:b], flat[a:b]))
    return out


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU's tanh approximation ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x³)))`` for a
    float32 array, each step in float32, the cube as x·x·x (as torch computes it) and tanh by numpy
    (its vectorised float32 tanh): three passes instead of eight. numpy's ``x**3`` calls powf
    value by value, 58 ns each: 29.5 of the formula's ~31 ms on 512 K values (kokoro's ALBERT,
    2026-12-05); here the whole takes ~2 ms. Split between threads as ``gelu_exact`` is."""
    from .threads import even_bounds, run_split

    loops = _loops()
    source = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(np.shape(x), np.float32)
    flat = out.reshape(-1)

    def part(a: int, b: int) -> None:
        loops.gelu_tanh_inner(source[a:b], flat[a:b])
        np.tanh(flat[a:b], out=flat[a:b])
        loops.gelu_tanh_outer(source[a:b], flat[a:b], flat[a:b])

    run_split(even_bounds(source.size, SPLIT_GELU), part)
    return out


def half_product(x: np.ndarray, bits: np.ndarray, out: np.ndarray, first: int, last: int) -> None:
    """``out[:, first:last] = x @ w[first:last].T`` for the fp16 matrix ``w`` whose bits are ``bits``
    [N, K] (``half.HalfMatrix.product`` calls it; releases the GIL)."""
    _loops().half_product_loop(x, bits, out, first, last)


def converts_fp16_natively() -> bool:
    """Can the compiled product widen fp16 with one instruction (``loops._fp16_to_float32``)? On
    arm64 always; on x86 with F16C (every x86 Mac; Intel since 2012, AMD since 2011). Without it
    LLVM would call a helper numba's JIT does not link: ``half`` then widens blocks for BLAS."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("f16c", False))
