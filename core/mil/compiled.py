"""The interpreter's element loops compiled with numba: work that numpy can only do in several
whole-array passes (each reading and writing the tensor again) done in one pass.

Compiled on first use and cached by numba beside this module's bytecode (``__pycache__``, or numba's
per-user cache directory when that is read-only): the same trust as Python's own ``.pyc`` files.
Imports numpy and numba only.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: float32 magnitude bits: below this, fp16 holds multiples of 2**-24 (its subnormals, 2**-14)
_SUBNORMAL = np.uint32(0x38800000)
#: from this magnitude on, a value rounds to fp16's inf (65520), or is inf or NaN
OVERFLOW = np.uint32(0x477FF000)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _round_into(src: np.ndarray, dst: np.ndarray) -> np.uint32:  # pragma: no cover - compiled
    """``dst[i] = float32(float16(src[i]))`` for flat float32 arrays (ties to even), and the largest
    magnitude's float32 bits (the caller's finiteness test). ``dst`` may be ``src``.

    * fp16's normal range: add half an fp16 ulp (less one, plus the kept bit: ties to even) to the
      float32 bits and clear the 13 dropped mantissa bits;
    * below 2**-14 (subnormals): one float32 addition of 0.5 rounds |x| to a multiple of 2**-24,
      ties to even, because the float32 ulp on [0.5, 1) is 2**-24; subtracting 0.5 again is exact;
    * from 65520 on: inf of the same sign; NaN stays NaN, quieted, its payload cut to fp16's 10 bits
      (what numpy's cast there and back gives).
    """
    bits = src.view(np.uint32)
    out = dst.view(np.uint32)
    peak = np.uint32(0)
    for i in range(bits.size):
        b = bits[i]
        magnitude = b & np.uint32(0x7FFFFFFF)
        if magnitude > peak:
            peak = magnitude
        if magnitude < _SUBNORMAL:
            tiny = (np.float32(abs(src[i])) + np.float32(0.5)) - np.float32(0.5)
            dst[i] = tiny if b >> np.uint32(31) == 0 else -tiny
        elif magnitude < OVERFLOW:
            out[i] = (b + np.uint32(0x0FFF) + ((b >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
        elif magnitude > np.uint32(0x7F800000):
            out[i] = (b & np.uint32(0xFFFFE000)) | np.uint32(0x00400000)
        else:
            out[i] = (b & np.uint32(0x80000000)) | np.uint32(0x7F800000)
    return peak


def round_into(src: np.ndarray, dst: np.ndarray) -> int:
    """Round the contiguous float32 ``src`` into ``dst`` (same size; may be ``src``); the largest
    magnitude's float32 bits."""
    return int(_round_into(src.reshape(-1), dst.reshape(-1)))


#: every fp16 bit pattern's float32 bits, from numpy's own cast (exact: fp16 -> float32 loses nothing)
_FP16_TO_FP32 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32).view(np.uint32)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _widen_into(src: np.ndarray, table: np.ndarray, dst: np.ndarray) -> None:  # pragma: no cover - compiled
    for i in range(src.size):
        dst[i] = table[src[i]]


def widen_fp16(value: np.ndarray) -> np.ndarray:
    """fp16 -> float32, a new array: each value looked up by its bits in a 256 KB table.

    Measured (benchmarks/bench_fp16_casts.py, 2026-12-04, 2 idle cores): 34 M values in 34 ms, numpy's
    cast 55 ms; numpy's cast of a weight as coremltools' loader returns it took up to 178 ms. Most of
    what a package's load spends here is the new float32 memory's first touch (vibevoice's decoder:
    1.4 GB); the four vibevoice packages loaded in 5.6-6.1 s instead of 8.0-9.4 s."""
    source = np.ascontiguousarray(value)
    out = np.empty(np.shape(value), np.float32)
    _widen_into(source.reshape(-1).view(np.uint16), _FP16_TO_FP32, out.reshape(-1).view(np.uint32))
    return out


_SQRT2 = np.float32(np.sqrt(2.0))


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _gelu_into(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    half, one = np.float32(0.5), np.float32(1.0)
    for i in range(x.size):
        v = x[i]
        t = v / _SQRT2
        out[i] = (half * v) * (np.float32(math.erf(np.float64(t))) + one)


def gelu_exact(x: np.ndarray) -> np.ndarray:
    """``0.5 * x * (1 + erf(x / sqrt 2))`` for a float32 array, each step in float32 as numpy
    evaluates the formula, erf in float64 rounded to float32 (as scipy's float32 erf does): the
    same bits (tests/mil/test_mil_ops.py), in one pass instead of four. Measured on 6 M values
    (2026-12-04, idle): 86 ms, the numpy formula 140 ms (erf itself is most of either)."""
    source = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(np.shape(x), np.float32)
    _gelu_into(source.reshape(-1), out.reshape(-1))
    return out
