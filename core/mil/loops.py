"""The interpreter's element loops compiled with numba (``compiled`` calls them; imported with
the first program run, not with ``zoo.core.mil``: numba costs 0.2 s and 50 MB to import and as much
again to set up its compiler).

Compiled on first use and cached by numba beside this module's bytecode (``__pycache__``, or numba's
per-user cache directory when that is read-only): the same trust as Python's own ``.pyc`` files.
Imports numpy and numba (with its llvmlite) only.
"""

from __future__ import annotations

import math
from typing import Callable

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

#: float32 magnitude bits: below this, fp16 holds multiples of 2**-24 (its subnormals, 2**-14)
_SUBNORMAL = np.uint32(0x38800000)
#: from this magnitude on, a value rounds to fp16's inf (65520), or is inf or NaN
OVERFLOW = np.uint32(0x477FF000)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def round_loop(src: np.ndarray, dst: np.ndarray) -> np.uint32:  # pragma: no cover - compiled
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


#: every fp16 bit pattern's float32 bits, from numpy's own cast (exact: fp16 -> float32 loses nothing)
FP16_TO_FP32 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32).view(np.uint32)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def widen_loop(src: np.ndarray, table: np.ndarray, dst: np.ndarray) -> None:  # pragma: no cover - compiled
    for i in range(src.size):
        dst[i] = table[src[i]]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def half_peak(bits: np.ndarray) -> np.uint16:  # pragma: no cover - compiled
    """The largest exponent field (bits & 0x7C00) among fp16 values' ``bits``: 0x7C00 when any is
    inf or NaN."""
    peak = np.uint16(0)
    mask = np.uint16(0x7C00)
    for i in range(bits.size):
        e = bits[i] & mask
        if e > peak:
            peak = e
    return peak


_SQRT2 = np.float32(np.sqrt(2.0))


@numba.njit(cache=True, nogil=True, boundscheck=False)
def gelu_loop(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    half, one = np.float32(0.5), np.float32(1.0)
    for i in range(x.size):
        v = x[i]
        t = v / _SQRT2
        out[i] = (half * v) * (np.float32(math.erf(np.float64(t))) + one)


#: the tanh approximation's constants, as float32 (sqrt(2 / pi) and the cubic's coefficient)
_TANH_SCALE = np.float32(math.sqrt(2.0 / math.pi))
_TANH_CUBIC = np.float32(0.044715)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def gelu_tanh_inner(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out = sqrt(2/pi) * (x + 0.044715 * x·x·x)`` in float32, each step rounded as numpy's would
    be (the cube as two products, as torch computes it), for flat float32 arrays."""
    for i in range(x.size):
        v = x[i]
        out[i] = _TANH_SCALE * (v + _TANH_CUBIC * (v * v * v))


@numba.njit(cache=True, nogil=True, boundscheck=False)
def gelu_tanh_outer(x: np.ndarray, t: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out = 0.5 * x * (1 + t)`` in float32 (``t`` the tanh of the inner term; ``out`` may be ``t``)."""
    half, one = np.float32(0.5), np.float32(1.0)
    for i in range(x.size):
        out[i] = (half * x[i]) * (t[i] + one)


@intrinsic
def _fp16_to_float32(typingctx, bits):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """An fp16 value's bits (uint16) -> float32, exactly: LLVM's extension from half precision (one
    vector instruction on x86 with F16C and on arm64; a signalling NaN comes out quiet)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


#: the same intrinsic, typed as numba calls it (from compiled code: one fp16 bit pattern in)
_fp16_bits: Callable[[int], float] = _fp16_to_float32  # type: ignore[assignment]


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc", "contract"})
def half_product_loop(  # pragma: no cover - compiled
    x: np.ndarray, bits: np.ndarray, out: np.ndarray, first: int, last: int
) -> None:
    """``out[m, n] = sum_k x[m, k] * w[n, k]`` for ``n`` in ``[first, last)``, ``w`` the fp16 matrix
    whose bits are ``bits`` [N, K] (C order), ``x`` [M, K] float32 (C order), each a float32 dot
    product (summed in any order, fused multiply-adds allowed, as a BLAS product's).

    Four weight rows are widened at a time into float32 rows, then their dot products with two
    input rows at a time share each load: eight sums in flight (the loop is bound by multiply-adds
    once the weights are read; one row at a time ran 209 ms where this runs 138, for 140 weights
    of vibevoice's tts_lm with 10 input rows, one thread)."""
    rows, depth = x.shape
    w = np.empty((4, depth), np.float32)
    n = first
    while n + 4 <= last:
        for k in range(depth):
            w[0, k] = _fp16_bits(bits[n, k])
            w[1, k] = _fp16_bits(bits[n + 1, k])
            w[2, k] = _fp16_bits(bits[n + 2, k])
            w[3, k] = _fp16_bits(bits[n + 3, k])
        m = 0
        while m + 2 <= rows:
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0.0)
            for k in range(depth):
                u, v = x[m, k], x[m + 1, k]
                w0, w1, w2, w3 = w[0, k], w[1, k], w[2, k], w[3, k]
                a0 += u * w0
                a1 += u * w1
                a2 += u * w2
                a3 += u * w3
                b0 += v * w0
                b1 += v * w1
                b2 += v * w2
                b3 += v * w3
            out[m, n], out[m, n + 1], out[m, n + 2], out[m, n + 3] = a0, a1, a2, a3
            out[m + 1, n], out[m + 1, n + 1], out[m + 1, n + 2], out[m + 1, n + 3] = b0, b1, b2, b3
            m += 2
        if m < rows:
            a0 = a1 = a2 = a3 = np.float32(0.0)
            for k in range(depth):
                u = x[m, k]
                a0 += u * w[0, k]
                a1 += u * w[1, k]
                a2 += u * w[2, k]
                a3 += u * w[3, k]
            out[m, n], out[m, n + 1], out[m, n + 2], out[m, n + 3] = a0, a1, a2, a3
        n += 4
    while n < last:  # the last rows, one at a time
        for k in range(depth):
            w[0, k] = _fp16_bits(bits[n, k])
        for m in range(rows):
            a0 = np.float32(0.0)
            for k in range(depth):
                a0 += x[m, k] * w[0, k]
            out[m, n] = a0
        n += 1
