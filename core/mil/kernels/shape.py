"""Shape and indexing kernels: reshape, slicing, concat/split, padding, sorting, gather and scatter."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import _axis, _ints, kernel


# --------------------------------------------------------------- shape manipulation
@kernel("reshape")
def reshape(x: Any, shape: Any, **_: Any) -> Any:
    target = _ints(shape)
    target = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
    return np.reshape(x, target)


@kernel("reshape_like")
def reshape_like(x: Any, ref_tensors: Any, begins: Any, ends: Any, end_masks: Any, **_: Any) -> Any:
    shape: list[int] = []
    for ref, b, e, m in zip(
        ref_tensors, _ints(begins), _ints(ends), [bool(v) for v in np.asarray(end_masks).reshape(-1)]
    ):
        shape += list(ref.shape[b:] if m else ref.shape[b:e])
    return np.reshape(x, shape)


@kernel("transpose")
def transpose(x: Any, perm: Any, **_: Any) -> Any:
    return np.transpose(x, _ints(perm))


@kernel("expand_dims")
def expand_dims(x: Any, axes: Any, **_: Any) -> Any:
    rank = x.ndim + len(_ints(axes))
    for a in sorted(_axis(a, rank) for a in _ints(axes)):
        x = np.expand_dims(x, a)
    return x


@kernel("squeeze")
def squeeze(x: Any, axes: Any = None, **_: Any) -> Any:
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(_axis(a, x.ndim) for a in _ints(axes)))


@kernel("tile")
def tile(x: Any, reps: Any, **_: Any) -> Any:
    return np.tile(x, _ints(reps))


@kernel("reverse")
def reverse(x: Any, axes: Any = None, **_: Any) -> Any:
    return np.flip(x, axis=None if axes is None else tuple(_ints(axes)))


@kernel("shape")
def shape(x: Any, **_: Any) -> Any:
    return np.asarray(x.shape, dtype=np.int32)


@kernel("fill")
def fill(shape: Any, value: Any = 0.0, **_: Any) -> Any:
    return np.full(_ints(shape), value)


@kernel("fill_like")
def fill_like(ref_tensor: Any, value: Any = 0.0, **_: Any) -> Any:
    return np.full(ref_tensor.shape, value)


@kernel("range_1d")
def range_1d(end: Any, start: Any, step: Any, **_: Any) -> Any:
    return np.arange(start, end, step)


@kernel("band_part")
def band_part(x: Any, lower: Any = -1, upper: Any = -1, **_: Any) -> Any:
    m, n = x.shape[-2:]
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    keep = np.ones((m, n), dtype=bool)
    if int(lower) >= 0:
        keep &= (i - j) <= int(lower)
    if int(upper) >= 0:
        keep &= (j - i) <= int(upper)
    return np.where(keep, x, 0)


def _slices(
    x: Any, begin: Any, end: Any, stride: Any, begin_mask: Any, end_mask: Any, squeeze_mask: Any
) -> tuple[tuple[slice, ...], list[int]]:
    rank = x.ndim
    b = _ints(begin)
    e = _ints(end)
    s = _ints(stride) if stride is not None else [1] * rank
    bm = [bool(v) for v in np.asarray(begin_mask).reshape(-1)] if begin_mask is not None else [False] * rank
    em = [bool(v) for v in np.asarray(end_mask).reshape(-1)] if end_mask is not None else [False] * rank
    sm = [bool(v) for v in np.asarray(squeeze_mask).reshape(-1)] if squeeze_mask is not None else [False] * rank
    index = []
    squeeze_axes = []
    for i in range(rank):
        if sm[i]:
            start = b[i] + x.shape[i] if b[i] < 0 else b[i]
            index.append(slice(start, start + 1, 1))
            squeeze_axes.append(i)
            continue
        index.append(slice(None if bm[i] else b[i], None if em[i] else e[i], s[i]))
    return tuple(index), squeeze_axes


@kernel("slice_by_index")
def slice_by_index(
    x: Any,
    begin: Any,
    end: Any,
    stride: Any = None,
    begin_mask: Any = None,
    end_mask: Any = None,
    squeeze_mask: Any = None,
    **_: Any,
) -> Any:
    index, squeeze_axes = _slices(x, begin, end, stride, begin_mask, end_mask, squeeze_mask)
    y = x[index]
    return np.squeeze(y, axis=tuple(squeeze_axes)) if squeeze_axes else y


@kernel("slice_update")
def slice_update(
    x: Any,
    update: Any,
    begin: Any,
    end: Any,
    stride: Any = None,
    begin_mask: Any = None,
    end_mask: Any = None,
    squeeze_mask: Any = None,
    **_: Any,
) -> Any:
    index, _sq = _slices(x, begin, end, stride, begin_mask, end_mask, squeeze_mask)
    y = np.array(x, copy=True)
    y[index] = np.reshape(update, y[index].shape)
    return y


@kernel("slice_by_size")
def slice_by_size(x: Any, begin: Any, size: Any, **_: Any) -> Any:
    index = tuple(slice(b, None if sz == -1 else b + sz) for b, sz in zip(_ints(begin), _ints(size)))
    return x[index]


@kernel("concat")
def concat(values: Any, axis: Any, interleave: Any = False, **_: Any) -> Any:
    a = int(axis)
    if interleave:
        stacked = np.stack(values, axis=_axis(a, values[0].ndim) + 1)
        shape = list(values[0].shape)
        shape[_axis(a, values[0].ndim)] *= len(values)
        return stacked.reshape(shape)
    return np.concatenate(values, axis=a)


@kernel("stack")
def stack(values: Any, axis: Any = 0, **_: Any) -> Any:
    return np.stack(values, axis=int(axis))


@kernel("split")
def split(x: Any, axis: Any, num_splits: Any = None, split_sizes: Any = None, **_: Any) -> Any:
    a = int(axis)
    if split_sizes is not None:
        points = np.cumsum(_ints(split_sizes))[:-1]
        return tuple(np.split(x, points, axis=a))
    return tuple(np.split(x, int(num_splits), axis=a))


@kernel("select")
def select(cond: Any, a: Any, b: Any, **_: Any) -> Any:
    return np.where(cond, a, b)


@kernel("pad")
def pad(x: Any, pad: Any, mode: str = "constant", constant_val: Any = 0.0, **_: Any) -> Any:
    p = _ints(pad)
    n = len(p) // 2
    widths = [(0, 0)] * (x.ndim - n) + [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=constant_val)
    return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")  # MIL's "replicate" is numpy's "edge"


@kernel("cumsum")
def cumsum(x: Any, axis: Any = 0, exclusive: Any = False, reverse: Any = False, **_: Any) -> Any:
    a = int(axis)
    y = np.flip(x, a) if reverse else x
    out = np.cumsum(y, axis=a, dtype=y.dtype)
    if exclusive:
        out = out - y
    return np.flip(out, a) if reverse else out


@kernel("topk")
def topk(
    x: Any, k: Any = 1, axis: Any = -1, ascending: Any = False, sort: Any = True, return_indices: Any = True, **_: Any
) -> Any:
    a = int(axis)
    order = np.argsort(x if ascending else -x, axis=a, kind="stable")
    idx = np.take(order, np.arange(int(k)), axis=a)
    return np.take_along_axis(x, idx, axis=a), idx.astype(np.int32)


@kernel("argsort")
def argsort(x: Any, axis: Any = -1, ascending: Any = False, **_: Any) -> Any:
    return np.argsort(x if ascending else -x, axis=int(axis), kind="stable").astype(np.int32)


# ----------------------------------------------------------------- gather / scatter
@kernel("gather")
def gather(x: Any, indices: Any, axis: Any = 0, batch_dims: Any = 0, **_: Any) -> Any:
    a = _axis(axis, x.ndim)
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + x.shape[a], idx)
    bd = int(batch_dims)
    if bd == 0:
        return np.take(x, idx, axis=a)
    return np.stack([gather(x[i], idx[i], a - 1, bd - 1) for i in range(x.shape[0])])


@kernel("gather_along_axis")
def gather_along_axis(x: Any, indices: Any, axis: Any = 0, **_: Any) -> Any:
    a = _axis(axis, x.ndim)
    idx = np.asarray(indices).astype(np.int64)
    return np.take_along_axis(x, np.where(idx < 0, idx + x.shape[a], idx), axis=a)


@kernel("gather_nd")
def gather_nd(x: Any, indices: Any, batch_dims: Any = 0, **_: Any) -> Any:
    idx = np.asarray(indices).astype(np.int64)
    bd = int(batch_dims)
    if bd:
        return np.stack([gather_nd(x[i], idx[i], bd - 1) for i in range(x.shape[0])])
    k = idx.shape[-1]
    return x[tuple(np.moveaxis(idx, -1, 0)[i] for i in range(k))]


def _scatter_into(y: Any, index: Any, updates: Any, mode: str) -> Any:
    """y[index] = updates (mode "update") or y[index] <op>= updates, repeated indices accumulating."""
    if mode == "update":
        y[index] = updates
    else:
        ufunc = {
            "add": np.add,
            "sub": np.subtract,
            "mul": np.multiply,
            "div": np.true_divide,
            "max": np.maximum,
            "min": np.minimum,
        }[mode]
        ufunc.at(y, index, updates)
    return y


@kernel("scatter")
def scatter(data: Any, indices: Any, updates: Any, axis: Any = 0, mode: str = "add", **_: Any) -> Any:
    a = _axis(axis, data.ndim)
    y = np.moveaxis(np.array(data, copy=True), a, 0)
    idx = np.asarray(indices).astype(np.int64).reshape(-1)
    idx = np.where(idx < 0, idx + y.shape[0], idx)
    u = np.moveaxis(np.asarray(updates), a, 0).reshape((len(idx),) + y.shape[1:])
    return np.moveaxis(_scatter_into(y, idx, u, mode), 0, a)


@kernel("scatter_nd")
def scatter_nd(data: Any, indices: Any, updates: Any, mode: str = "add", **_: Any) -> Any:
    y = np.array(data, copy=True)
    idx = np.asarray(indices).astype(np.int64)
    k = idx.shape[-1]
    flat = idx.reshape(-1, k)
    u = np.asarray(updates).reshape((flat.shape[0],) + y.shape[k:])
    return _scatter_into(y, tuple(flat[:, i] for i in range(k)), u, mode)


@kernel("scatter_along_axis")
def scatter_along_axis(data: Any, indices: Any, updates: Any, axis: Any = 0, mode: str = "add", **_: Any) -> Any:
    a = _axis(axis, data.ndim)
    y = np.array(data, copy=True)
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + y.shape[a], idx)
    grids = list(np.indices(idx.shape, sparse=True))
    grids[a] = idx
    return _scatter_into(y, tuple(grids), updates, mode)


@kernel("flatten2d")
def flatten2d(x: Any, axis: Any = 1, **_: Any) -> Any:
    a = _axis(axis, x.ndim)
    return np.reshape(
        x, (int(np.prod(x.shape[:a], dtype=np.int64)), -1 if x.size else int(np.prod(x.shape[a:], dtype=np.int64)))
    )


@kernel("sliding_windows")
def sliding_windows(x: Any, axis: Any, size: Any, stride: Any = 1, **_: Any) -> Any:
    """All windows of ``size`` along ``axis``, ``stride`` apart: [*d0, count, size, *dn]."""
    a, size, stride = _axis(axis, x.ndim), int(size), int(stride)
    windows = np.lib.stride_tricks.sliding_window_view(x, size, axis=a)  # [*d0, n - size + 1, *dn, size]
    windows = np.moveaxis(windows, -1, a + 1)[(slice(None),) * a + (slice(None, None, stride),)]
    return np.ascontiguousarray(windows)


@kernel("reverse_sequence")
def reverse_sequence(x: Any, lengths: Any, seq_axis: Any = 0, batch_axis: Any = 0, **_: Any) -> Any:
    """For each slice along ``batch_axis``, reverse its first ``lengths[b]`` elements along ``seq_axis``."""
    out = np.array(x, copy=True)
    sa, ba = _axis(seq_axis, x.ndim), _axis(batch_axis, x.ndim)
    for b, n in enumerate(_ints(lengths)):
        index: list[Any] = [slice(None)] * x.ndim
        index[ba] = b
        index[sa] = slice(0, n)
        source = np.asarray(x)[tuple(index)]
        seq = sa - (1 if ba < sa else 0)  # seq_axis within the slice
        out[tuple(index)] = np.flip(source, axis=seq)
    return out


@kernel("non_zero")
def non_zero(x: Any, **_: Any) -> Any:
    return np.argwhere(np.asarray(x) != 0).astype(np.int32)


@kernel("one_hot")
def one_hot(
    indices: Any, one_hot_vector_size: Any, axis: Any = -1, on_value: Any = 1, off_value: Any = 0, **_: Any
) -> Any:
    indices = np.asarray(indices).astype(np.int64)
    depth = int(np.asarray(one_hot_vector_size).reshape(-1)[0])
    hot = indices[..., None] == np.arange(depth)  # [*D, depth]
    out = np.where(hot, on_value, off_value)
    return np.moveaxis(out, -1, _axis(axis, indices.ndim + 1))
