"""The interpreter's element loops compiled with numba (``compiled`` calls them; imported with
the first program run, not with ``zoo.core.mil``: numba costs 0.2 s and 50 MB to import and as much
again to set up its compiler).

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


_SQRT2 = np.float32(np.sqrt(2.0))


@numba.njit(cache=True, nogil=True, boundscheck=False)
def gelu_loop(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    half, one = np.float32(0.5), np.float32(1.0)
    for i in range(x.size):
        v = x[i]
        t = v / _SQRT2
        out[i] = (half * v) * (np.float32(math.erf(np.float64(t))) + one)
