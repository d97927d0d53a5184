"""Linear algebra and convolution: linear, matmul, einsum, attention, conv, conv_transpose."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..half import HalfMatrix
from .base import _ints, kernel
from .elementwise import softmax_into


# ------------------------------------------------------------------ linear algebra
@kernel("linear")
def linear(x: Any, weight: Any, bias: Any = None, **_: Any) -> Any:
    if isinstance(weight, HalfMatrix):  # kept as fp16 (see ``half``): its own product
        y = weight.product(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], weight.shape[0])
    else:
        y = np.matmul(x, weight.T)
    return y + bias if bias is not None else y


@kernel("matmul")
def matmul(x: Any, y: Any, transpose_x: Any = False, transpose_y: Any = False, **_: Any) -> Any:
    if transpose_x and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if transpose_y and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@kernel("einsum")
def einsum(values: Any, equation: str, **_: Any) -> Any:
    return np.einsum(equation, *values)


@kernel("scaled_dot_product_attention")
def scaled_dot_product_attention(query: Any, key: Any, value: Any, attn_mask: Any = None, **_: Any) -> Any:
    # the scores are scaled, masked and normalised in their own memory (a [heads, T, T] array: one
    # fresh array per step was 5 of them, the voice encoder's 2000 steps x 16 heads 256 MB each)
    scores = np.matmul(query, np.swapaxes(key, -1, -2))
    scale = np.float32(np.sqrt(query.shape[-1]))
    if np.result_type(scores, scale) == scores.dtype:
        np.divide(scores, scale, out=scores)
    else:  # fp16 scores are divided in float32, as before
        scores = scores / scale
    if attn_mask is not None:
        if attn_mask.dtype == np.bool_ and np.broadcast_shapes(scores.shape, attn_mask.shape) == scores.shape:
            np.copyto(scores, -np.inf, where=np.logical_not(attn_mask))
        elif attn_mask.dtype == np.bool_:
            scores = np.where(attn_mask, scores, -np.inf)
        elif np.broadcast_shapes(scores.shape, attn_mask.shape) == scores.shape and (
            np.result_type(scores, attn_mask) == scores.dtype
        ):
            np.add(scores, attn_mask, out=scores)
        else:
            scores = scores + attn_mask
    np.subtract(scores, np.max(scores, axis=-1, keepdims=True), out=scores)
    return np.matmul(softmax_into(scores, -1), value)


# -------------------------------------------------------------------- convolution
def _conv_pads(
    pad_type: str, pad: Any, in_sizes: list[int], kernel_sizes: list[int], strides: list[int], dilations: list[int]
) -> list[tuple[int, int]]:
    n = len(in_sizes)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        p = _ints(pad)
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    pads = []
    for size, k, s, d in zip(in_sizes, kernel_sizes, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        pads.append((large, small) if pad_type == "same_lower" else (small, large))
    return pads


#: the gathered kernel taps of one conv call are built for at most this many bytes at a time: a
#: longer output is computed in pieces along its last axis (kokoro's generator: 128 channels x 11
#: taps x 96,000 samples would be 540 MB at once; each output value is the same dot product)
CONV_CHUNK_BYTES = 32 << 20


@kernel("conv")
def conv(
    x: Any,
    weight: Any,
    bias: Any = None,
    strides: Any = None,
    pad_type: str = "valid",
    pad: Any = None,
    dilations: Any = None,
    groups: Any = 1,
    **_: Any,
) -> Any:
    nsp = x.ndim - 2
    strides_ = _ints(strides) if strides is not None else [1] * nsp
    dil = _ints(dilations) if dilations is not None else [1] * nsp
    ks = list(weight.shape[2:])
    pads = _conv_pads(pad_type, pad, list(x.shape[2:]), ks, strides_, dil)
    if isinstance(weight, HalfMatrix):  # a pointwise weight kept as fp16 (see ``half``)
        if int(groups) == 1 and all(s == 1 for s in strides_) and all(p == (0, 0) for p in pads):
            n, cin, length = x.shape[0], x.shape[1], int(np.prod(x.shape[2:]))
            rows = np.moveaxis(x.reshape(n, cin, length), 1, 2).reshape(n * length, cin)  # [N*L, C]
            y = np.moveaxis(weight.product(rows).reshape(n, length, -1), 2, 1).reshape(n, -1, *x.shape[2:])
            return y + bias.reshape((1, -1) + (1,) * nsp) if bias is not None else y
        weight = weight.widened()
    xp = np.pad(x, [(0, 0), (0, 0)] + pads) if any(p != (0, 0) for p in pads) else x
    n, cin = xp.shape[:2]
    out_sizes = [(xp.shape[2 + i] - (ks[i] - 1) * dil[i] - 1) // strides_[i] + 1 for i in range(nsp)]
    y = np.empty((n, weight.shape[0], *out_sizes), np.float32)
    cols_bytes = 4 * n * cin * int(np.prod(ks)) * int(np.prod(out_sizes))
    last = out_sizes[-1]
    per = max(1, last * CONV_CHUNK_BYTES // max(cols_bytes, 1)) if cols_bytes > CONV_CHUNK_BYTES else last
    for a in range(0, last, per):
        b = min(a + per, last)
        lo, hi = a * strides_[-1], (b - 1) * strides_[-1] + (ks[-1] - 1) * dil[-1] + 1
        y[..., a:b] = _conv_valid(xp[..., lo:hi], weight, strides_, dil, int(groups), out_sizes[:-1] + [b - a])
    if bias is not None:
        y += bias.reshape((1, -1) + (1,) * nsp)
    return y


def _conv_valid(xp: Any, weight: Any, strides_: list[int], dil: list[int], g: int, out_sizes: list[int]) -> Any:
    """An unpadded convolution whose output has ``out_sizes``: [N, O, *out_sizes]."""
    ks = list(weight.shape[2:])
    n, cin = xp.shape[:2]
    cout = weight.shape[0]
    if n == 1 and g == 1 and all(k == 1 for k in ks) and all(s == 1 for s in strides_) and xp.flags.c_contiguous:
        # a pointwise convolution: the one tap is the input itself, already laid out as [C, L] (the
        # product below is the one the general path makes, without copying the input first)
        y = np.matmul(weight.reshape(1, cout, cin), xp.reshape(1, cin, int(np.prod(out_sizes))))
        return y.reshape(1, cout, *out_sizes)
    # gather every kernel tap as a strided view: [N, C, K..., *out]
    taps = []
    for offs in itertools.product(*[range(k) for k in ks]):
        index = [slice(None), slice(None)] + [
            slice(o * dil[i], o * dil[i] + (out_sizes[i] - 1) * strides_[i] + 1, strides_[i])
            for i, o in enumerate(offs)
        ]
        taps.append(xp[tuple(index)])
    cols = np.stack(taps, axis=2)  # [N, C, prod(K), *out]
    cg, og, length = cin // g, cout // g, int(np.prod(out_sizes))
    # one batched matrix product over the groups (BLAS; a depthwise conv is g products of [1, K]
    # by [K, N*L], not g separate calls): [g, O/g, C/g*K] @ [g, C/g*K, N*L]
    cols = cols.reshape(n, g, cg * len(taps), length).transpose(1, 2, 0, 3).reshape(g, cg * len(taps), n * length)
    y = np.matmul(weight.reshape(g, og, cg * len(taps)), cols)  # [g, O/g, N*L]
    y = y.reshape(g, og, n, *out_sizes)
    return np.moveaxis(y, 2, 0).reshape(n, cout, *out_sizes)


@kernel("conv_transpose")
def conv_transpose(
    x: Any,
    weight: Any,
    bias: Any = None,
    pad: Any = None,
    output_shape: Any = None,
    pad_type: str = "valid",
    strides: Any = None,
    dilations: Any = None,
    groups: Any = 1,
    **_: Any,
) -> Any:
    nsp = x.ndim - 2
    s = _ints(strides) if strides is not None else [1] * nsp
    d = _ints(dilations) if dilations is not None else [1] * nsp
    ks = list(weight.shape[2:])
    g = int(groups)
    n, cin = x.shape[:2]
    cg = cin // g
    og = weight.shape[1]
    full = [(x.shape[2 + i] - 1) * s[i] + (ks[i] - 1) * d[i] + 1 for i in range(nsp)]
    y = np.zeros((n, og * g, *full), dtype=np.float32)
    taps = int(np.prod(ks))
    # every tap and group in one batched matrix product, [g, O/g·K, C/g] @ [g, C/g, N·L], read from
    # the weight as it is stored ([C, O/g, K...] is [g, C/g, O/g·K]: the product reads it transposed,
    # without a copy). One product per tap read a strided [C/g, O/g] slice, which numpy gathers
    # into a copy: every cache line of the weight, once per tap (vibevoice's first upsampling:
    # 134 MB x 16 taps, 149 ms of its decoder's 0.45 s call). The products' [O·K, L] block is made
    # a slab of input positions at a time (CONV_CHUNK_BYTES), each slab added where its taps land.
    wt = np.swapaxes(weight.reshape(g, cg, og * taps), 1, 2)
    last = x.shape[-1]
    per_position = 4 * n * og * g * taps * int(np.prod(x.shape[2:-1]))
    per = max(1, min(last, CONV_CHUNK_BYTES // max(per_position, 1)))
    for a in range(0, last, per):
        b = min(a + per, last)
        part = x[..., a:b]
        in_sizes = list(part.shape[2:])
        xs = np.moveaxis(part.reshape(n, g, cg, -1), 0, 2).reshape(g, cg, -1)  # [g, C/g, N·L]
        cols = np.matmul(wt, xs).reshape(g, og, taps, n, *in_sizes)
        for t, offs in enumerate(itertools.product(*[range(k) for k in ks])):
            contrib = np.moveaxis(cols[:, :, t], 2, 0).reshape(n, g * og, *in_sizes)
            starts = [o * d[i] + (a * s[i] if i == nsp - 1 else 0) for i, o in enumerate(offs)]
            index = [slice(None), slice(None)] + [
                slice(starts[i], starts[i] + (in_sizes[i] - 1) * s[i] + 1, s[i]) for i in range(nsp)
            ]
            y[tuple(index)] += contrib
    if pad_type == "custom" and pad is not None:
        p = _ints(pad)
        crops = [(p[2 * i], p[2 * i + 1]) for i in range(nsp)]
    elif pad_type == "same":
        crops = []
        for i in range(nsp):
            total = full[i] - x.shape[2 + i] * s[i]
            crops.append((total // 2, total - total // 2))
    else:
        crops = [(0, 0)] * nsp
    if output_shape is not None:
        target = _ints(output_shape)[2:]
        crops = [(c[0], full[i] - c[0] - target[i]) for i, c in enumerate(crops)]
    index = [slice(None), slice(None)] + [slice(c0, full[i] - c1) for i, (c0, c1) in enumerate(crops)]
    y = y[tuple(index)]
    if bias is not None:
        y = y + bias.reshape((1, -1) + (1,) * nsp)
    return y
