"""Kernels of the ops that hold compressed weights (coremltools.optimize.coreml's output).

iOS16: ``constexpr_affine_dequantize``, ``constexpr_cast``, ``constexpr_lut_to_dense``
(packed indices + ``shape``), ``constexpr_sparse_to_dense`` (packed bit mask + ``shape``).
iOS17: ``quantize``, ``dequantize`` (activations). iOS18: ``constexpr_blockwise_shift_scale``
(per-block scale and offset), ``constexpr_lut_to_dense`` (per-group and vector LUTs),
``constexpr_sparse_to_dense`` (shaped uint1 mask), ``constexpr_lut_to_sparse`` and
``constexpr_sparse_blockwise_shift_scale`` (their sparse forms, each returning the mask
and the decompressed non-zero values).

The milproto loader hands sub-byte types (uint1 … uint6, int4) over unpacked, one value
per element; the iOS16 forms keep their packed ``uint8`` bytes, read least significant
bit first. Decompressed values are computed in float32 and stored at the op's declared
dtype, like every other op.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import _axis, kernel


def _unpack_bits(packed: Any, nbits: int, count: int) -> np.ndarray:
    """``count`` unsigned ``nbits``-bit values packed LSB-first in bytes."""
    from ...util.bits import unpack_bits

    return unpack_bits(np.asarray(packed, np.uint8), nbits, count)


def _along(param: Any, rank: int, axis: Any) -> np.ndarray:
    """A scalar or a vector along ``axis`` (iOS16/17 per-channel parameters), broadcastable to ``rank``."""
    param = np.asarray(param, np.float32)
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    shape = [1] * rank
    shape[_axis(axis if axis is not None else 0, rank)] = param.size
    return param.reshape(shape)


def _block_index(shape: tuple[int, ...], blocks: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Per dimension d, the block (of ``blocks[d]`` equal blocks) each index falls in, shaped to broadcast."""
    return tuple(
        (np.arange(n) // (n // blocks[d])).reshape([-1 if i == d else 1 for i in range(len(shape))])
        for d, n in enumerate(shape)
    )


def _blocks(param: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A per-block parameter (same rank as the data, each dim dividing it) expanded to ``shape``."""
    param = np.asarray(param, np.float32)
    return param[_block_index(shape, param.shape)]


# ------------------------------------------------------------------------------- iOS16
@kernel("constexpr_affine_dequantize")
def constexpr_affine_dequantize(quantized_data: Any, zero_point: Any, scale: Any, axis: Any = 0, **_: Any) -> Any:
    q = np.asarray(quantized_data).astype(np.float32)  # the one full-size array: the rest in place
    q -= _along(zero_point, q.ndim, axis)
    q *= _along(scale, q.ndim, axis)
    return q


@kernel("constexpr_cast")
def constexpr_cast(source_val: Any, **_: Any) -> Any:
    return np.asarray(source_val, np.float32)  # stored at output_dtype by the interpreter


def _lut_iOS16(indices: Any, lut: Any, shape: Any) -> np.ndarray:
    lut = np.asarray(lut)
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    count = int(np.prod(shape, dtype=np.int64))
    nbits = int(np.log2(lut.size))
    return lut[_unpack_bits(indices, nbits, count)].reshape(shape)


def _lut_iOS18(indices: Any, lut: Any, vector_axis: Any = None) -> np.ndarray:
    """lut [*groups, palettes, vector]: element i of dim d uses group i // (n_d / groups_d)."""
    lut = np.asarray(lut)
    idx = np.asarray(indices)
    rank = idx.ndim
    groups = lut.shape[0] if rank else 1
    if rank and lut.shape[-1] == 1 and all(n == 1 for n in lut.shape[1:rank]) and idx.shape[0] % groups == 0:
        # tables along the first axis only (coremltools' per-grouped-channel palettes): each block
        # of rows looks its indices up in its own table, without an index array of the full size
        rows = idx.shape[0] // groups
        tables = lut.reshape(groups, -1)
        out = np.empty(idx.shape, lut.dtype)
        for g in range(groups):
            np.take(tables[g], idx[g * rows : (g + 1) * rows], out=out[g * rows : (g + 1) * rows])
        return out
    idx = idx.astype(np.int64)
    values = lut[_block_index(idx.shape, lut.shape[:rank]) + (idx,)]  # [*indices.shape, vector]
    vector = lut.shape[-1]
    if vector == 1:
        return values[..., 0]
    axis = _axis(vector_axis, rank)
    values = np.moveaxis(values, -1, axis + 1)  # the vector follows its index along vector_axis
    shape = list(idx.shape)
    shape[axis] *= vector
    return values.reshape(shape)


@kernel("constexpr_lut_to_dense")
def constexpr_lut_to_dense(indices: Any, lut: Any, shape: Any = None, vector_axis: Any = None, **_: Any) -> Any:
    lut = _as_stored(np.asarray(lut))
    return _lut_iOS16(indices, lut, shape) if shape is not None else _lut_iOS18(indices, lut, vector_axis)


def _as_stored(lut: np.ndarray) -> np.ndarray:
    """A float32 table whose every value is an fp16 value (an fp16 package's table, as the
    interpreter holds it) as fp16: the weight comes out fp16, which the interpreter widens by
    table lookup, instead of float32 it would round value by value (vibevoice's fp16-mixed
    decoder: 4.5 s of rounding on its first call, 2026-12-05)."""
    if lut.dtype != np.float32:
        return lut
    half = lut.astype(np.float16)
    return half if np.array_equal(half.astype(np.float32), lut, equal_nan=True) else lut


@kernel("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(nonzero_data: Any, mask: Any, shape: Any = None, **_: Any) -> Any:
    data = np.asarray(nonzero_data)
    if shape is not None:  # iOS16: packed bits, LSB first, and the output shape
        shape = [int(s) for s in np.asarray(shape).reshape(-1)]
        flags = np.unpackbits(np.asarray(mask, np.uint8), bitorder="little")[
            : int(np.prod(shape, dtype=np.int64))
        ].reshape(shape)
    else:  # iOS18: one uint1 per element, shaped like the output
        flags = np.asarray(mask)
    out = np.zeros(flags.shape, dtype=np.float32 if data.dtype.kind == "f" else data.dtype)
    out[flags != 0] = data
    return out


# ------------------------------------------------------------------------------- iOS17
_INT_RANGES = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int4": (-8, 7),
    "uint4": (0, 15),
    "int16": (-32768, 32767),
    "uint16": (0, 65535),
}


@kernel("quantize")
def quantize(
    input: Any, scale: Any, zero_point: Any = None, axis: Any = None, output_dtype: Any = "int8", **_: Any
) -> Any:  # noqa: A002
    """clip(round(input / scale) + zero_point), rounding half to even."""
    x = np.asarray(input, np.float32)
    q = np.round(x / _along(scale, x.ndim, axis))
    if zero_point is not None:
        q = q + _along(zero_point, x.ndim, axis)
    lo, hi = _INT_RANGES[str(output_dtype)]
    return np.clip(q, lo, hi)


@kernel("dequantize")
def dequantize(input: Any, scale: Any, zero_point: Any = None, axis: Any = None, **_: Any) -> Any:  # noqa: A002
    x = np.asarray(input).astype(np.float32)
    if zero_point is not None:
        x = x - _along(zero_point, x.ndim, axis)
    return x * _along(scale, x.ndim, axis)


# ------------------------------------------------------------------------------- iOS18
@kernel("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(data: Any, scale: Any, offset: Any = None, **_: Any) -> Any:
    """scale[block] * (data - offset[block]); block sizes = data.shape / scale.shape."""
    d = np.asarray(data).astype(np.float32)
    if offset is not None:
        d = d - _blocks(offset, d.shape)
    return _blocks(scale, d.shape) * d


@kernel("constexpr_lut_to_sparse")
def constexpr_lut_to_sparse(
    indices_mask: Any, indices_nonzero_data: Any, lut: Any, vector_axis: Any = None, **_: Any
) -> Any:
    """(the mask of the de-palettized values, those values in row-major order of the dense layout)."""
    mask = np.asarray(indices_mask)
    dense_indices = np.zeros(mask.shape, np.int64)
    dense_indices[mask != 0] = np.asarray(indices_nonzero_data).astype(np.int64)
    dense = _lut_iOS18(dense_indices, lut, vector_axis)
    vector = np.asarray(lut).shape[-1]
    if vector > 1:
        mask = np.repeat(mask, vector, axis=_axis(vector_axis, mask.ndim))
    return mask, dense[mask != 0]


@kernel("constexpr_sparse_blockwise_shift_scale")
def constexpr_sparse_blockwise_shift_scale(
    data_mask: Any, nonzero_data: Any, scale: Any, offset: Any = None, **_: Any
) -> Any:
    """(the mask, the shift-scaled non-zero values), each value using its dense position's block."""
    mask = np.asarray(data_mask)
    dense = np.zeros(mask.shape, np.float32)
    dense[mask != 0] = np.asarray(nonzero_data).astype(np.float32)
    if offset is not None:
        dense = dense - _blocks(offset, mask.shape)
    dense = _blocks(scale, mask.shape) * dense
    return mask, dense[mask != 0]
