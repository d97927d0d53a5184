"""fp16 weights kept as fp16 in memory, and the matrix products that read them so.

The interpreter holds every fp16 value as float32 (kernels compute in float32). For the large
weights of ``linear`` and pointwise ``conv`` ops that doubled a package's memory: vibevoice's
four packages held 2.8 GB of float32 weights for 1.4 GB stored. A :class:`HalfMatrix` keeps the
stored bits; its product widens each weight row as it reads it (exactly: fp16 -> float32 loses
nothing) and computes in float32, as the float32 copy's product did.

Which product runs is a matter of speed, never of values beyond float32 summation order:

* few rows of input (a decoding step: ``FUSED_ROWS`` or fewer): a compiled loop widens four weight
  rows at a time and takes their dot products with the input rows. It reads half the bytes BLAS
  read, and a step is bound by reading its weights. Measured (2026-12-05, 140 weights of vibevoice's
  tts_lm shapes, 600 MB stored, read cold, one thread each): 1 row 72 ms (BLAS on the float32 copy
  87 ms), 10 rows 138 ms (244), 16 rows 175 ms (256), 32 rows 295 ms (300); 10 rows on two
  threads 92-100 ms (BLAS 130-140).
* more rows, or a CPU that cannot widen fp16 in one instruction (x86 without F16C): a block of
  weight rows at a time is widened (``BLOCK_VALUES``) and BLAS takes the product, so the float32
  copy never exists whole.

The loop is split over the output columns between the process's threads (``threads``, as many as
``util.cpus.cpu_share()``; it releases the GIL); each output value is computed the same way
whatever the split. OpenBLAS's idle threads
spin on those cores after each BLAS call: zoo's CLI shortens that (``cli.app.main``).

Imports numpy, ``compiled`` and ``threads``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import compiled
from .threads import count, run_split

#: at most this many input rows go through the compiled loop; more go to BLAS (see above)
FUSED_ROWS = 24
#: weight values widened at a time for a BLAS product (4 MB of float32)
BLOCK_VALUES = 1 << 20
#: below this many weight values a product is not split between threads (a split costs ~50 µs)
SPLIT_VALUES = 1 << 18


class HalfMatrix:
    """An fp16 weight of ``shape`` [N, K, 1, ...] held as its bits, [N, K] uint16 in C order."""

    __slots__ = ("bits", "shape")

    @staticmethod
    def holds(value: Any) -> bool:
        """Can ``value`` be held so: an fp16 array [N, K, 1, ...]?"""
        return (
            isinstance(value, np.ndarray)
            and value.dtype == np.float16
            and value.ndim >= 2
            and all(d == 1 for d in value.shape[2:])
        )

    def __init__(self, value: np.ndarray):
        if not self.holds(value):
            raise ValueError(f"a HalfMatrix holds an fp16 [N, K, 1, ...] weight, not {value.dtype} {value.shape}")
        self.shape = tuple(value.shape)
        self.bits = np.ascontiguousarray(value).reshape(value.shape[0], value.shape[1]).view(np.uint16)

    @property
    def nbytes(self) -> int:
        return int(self.bits.nbytes)

    def widened(self) -> np.ndarray:
        """The weight as float32, in its stored shape (a new array)."""
        return compiled.widen_fp16(self.bits.view(np.float16)).reshape(self.shape)

    def product(self, x: np.ndarray) -> np.ndarray:
        """``x @ W.T`` for ``x`` [M, K] float32: [M, N] float32."""
        n, k = self.bits.shape
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != k:
            raise ValueError(f"a product with a [{n}, {k}] weight takes [M, {k}] inputs, not {x.shape}")
        out = np.empty((x.shape[0], n), np.float32)
        if x.shape[0] > FUSED_ROWS or not _native():
            per = max(1, BLOCK_VALUES // max(k, 1))
            for first in range(0, n, per):
                block = compiled.widen_fp16(self.bits[first : first + per].view(np.float16))
                np.matmul(x, block.T, out=out[:, first : first + per])
            return out
        loop = compiled.half_product
        threads = count() if n * k >= SPLIT_VALUES else 1
        if threads == 1:
            loop(x, self.bits, out, 0, n)
            return out
        # the loop widens four weight rows at a time: a split at a multiple of four computes every
        # column as the whole product would (the same bits whatever the thread count)
        bounds = [n * i // threads // 4 * 4 for i in range(threads)] + [n]
        run_split(bounds, lambda a, b: loop(x, self.bits, out, a, b))
        return out


_NATIVE: list[bool] = []


def _native() -> bool:
    """``compiled.converts_fp16_natively()``, asked once."""
    if not _NATIVE:
        _NATIVE.append(compiled.converts_fp16_natively())
    return _NATIVE[0]


def held(value: Any) -> Any:
    """A value as a kernel outside these products takes it: a HalfMatrix widened to float32."""
    return value.widened() if isinstance(value, HalfMatrix) else value
