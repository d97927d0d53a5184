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


#: the gathered kernel taps of one grouped conv call are built for at most this many bytes at a
#: time (a one-group conv's product buffer for a quarter of it): a longer output is computed in
#: pieces along its last axis (kokoro's generator: 128 channels x 11 taps x 96,000 samples would be
#: 540 MB at once; each output value is the same dot product)
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
    out_sizes = [(x.shape[2 + i] + sum(pads[i]) - (ks[i] - 1) * dil[i] - 1) // strides_[i] + 1 for i in range(nsp)]
    if int(groups) == 1 and all(lo >= 0 and hi >= 0 for lo, hi in pads):
        y = _conv_by_taps(x, weight, strides_, dil, [lo for lo, _ in pads], out_sizes)
        if bias is not None:
            y += bias.reshape((1, -1) + (1,) * nsp)
        return y
    xp = np.pad(x, [(0, 0), (0, 0)] + pads) if any(p != (0, 0) for p in pads) else x
    n, cin = xp.shape[:2]
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


def _conv_by_taps(
    x: Any, weight: Any, strides_: list[int], dil: list[int], pads_before: list[int], out_sizes: list[int]
) -> Any:
    """A convolution with one group, [N, O, *out_sizes]: the sum over the kernel's taps of [O, C] @
    [C, L] products, each added where it lands in the output. A tap reads the input positions it
    meets inside the input (the zero padding adds nothing, so the input is not padded first), a
    1-d window at stride 1 as a row-strided [C, L] view BLAS reads in place; other windows are
    copied, one tap at a time. Gathering every tap first (im2col) held the taps' copies and their
    transpose at once: kokoro's decoder, a 128-channel conv of 11 taps over 7,201 positions, took
    42 MB beside its 3.7 MB output, and its call peaked at 56 MB of arrays against torch's 12 MB
    (2026-12-05, tracemalloc). The products go through a buffer of at most ``CONV_CHUNK_BYTES`` / 4
    (a piece of the output's last axis at a time)."""
    ks = list(weight.shape[2:])
    n, cin = x.shape[:2]
    in_sizes = list(x.shape[2:])
    cout = weight.shape[0]
    taps = list(itertools.product(*[range(k) for k in ks]))
    # [T, O, C]: no copy when the weight is held tap by tap (the interpreter's loader does so)
    per_tap = np.ascontiguousarray(np.moveaxis(weight.reshape(cout, cin, len(taps)), 2, 0), dtype=np.float32)
    y = np.zeros((n, cout, *out_sizes), np.float32)
    # BLAS reads the window as rows of a leading dimension: channels laid out forward, each row
    # whole before the next (a reversed or broadcast view is read by numpy's products instead)
    rows_laid_out = x.strides[2] == 4 and x.strides[1] % 4 == 0 and x.strides[1] >= 4 * max(in_sizes[0], 1)
    if len(ks) == 1 and strides_[0] == 1 and x.dtype == np.float32 and rows_laid_out:
        gemm = _blas_sgemm()
        if gemm is not None:
            _taps_1d(gemm, x, per_tap, y, dil[0], pads_before[0])
            return y
    inner = int(np.prod(out_sizes[:-1]))  # positions per column of the last axis
    block = max(1, min(out_sizes[-1], (CONV_CHUNK_BYTES // 4) // (4 * cout * max(inner, 1))))
    buffer = np.empty(cout * inner * block, np.float32)
    for t, offs in enumerate(taps):
        # the output positions whose input index p * s + o * d - pad lies inside the input, per axis
        ranges = []
        for i, o in enumerate(offs):
            shift = o * dil[i] - pads_before[i]
            lo = max(0, -(shift // strides_[i]))
            hi = min(out_sizes[i], (in_sizes[i] - 1 - shift) // strides_[i] + 1) if in_sizes[i] - 1 - shift >= 0 else 0
            ranges.append((lo, hi, shift))
        if any(lo >= hi for lo, hi, _ in ranges):
            continue
        last_lo, last_hi, _ = ranges[-1]
        for a in range(last_lo, last_hi, block):
            e = min(a + block, last_hi)
            spans = [(lo, hi) for lo, hi, _ in ranges[:-1]] + [(a, e)]
            into = tuple(slice(lo, hi) for lo, hi in spans)
            read = tuple(
                slice(lo * strides_[i] + ranges[i][2], (hi - 1) * strides_[i] + ranges[i][2] + 1, strides_[i])
                for i, (lo, hi) in enumerate(spans)
            )
            sizes = [hi - lo for lo, hi in spans]
            count = int(np.prod(sizes))
            product = buffer[: cout * count].reshape(cout, count)
            for b in range(n):
                window = x[(b, slice(None)) + read]  # [C, *sizes]
                if window.ndim != 2 or window.strides[-1] != window.itemsize or window.dtype != np.float32:
                    window = np.ascontiguousarray(window, dtype=np.float32).reshape(cin, count)
                np.matmul(per_tap[t], window, out=product)
                y[(b, slice(None)) + into] += product.reshape(cout, *sizes)
    return y


_SGEMM: list[Any] = []  # [(BLAS sgemm, its integer type) or None], looked up once


def _blas_sgemm() -> Any:
    """The BLAS ``sgemm`` numpy itself calls (the OpenBLAS its wheels bundle, ``numpy.libs``; its
    Fortran interface with 64-bit integers) as a ctypes function with its integer type, or None
    when numpy is linked otherwise (then numpy's products are used). numpy's ``matmul`` has no
    accumulating form (C += A B) and no leading dimension for an output piece, which a tap's
    product needs. It must be numpy's own library: a second OpenBLAS (scipy's) keeps its own
    threads, and each library's threads spin on the cores while the other computes (kokoro's
    decoder call: 1.09 s through scipy's instead of 0.78 s, 2026-12-05)."""
    if not _SGEMM:
        found = None
        try:
            import ctypes
            from pathlib import Path

            libs = sorted((Path(np.__file__).parent.parent / "numpy.libs").glob("libscipy_openblas64_*.so"))
            if len(libs) == 1:
                function = getattr(ctypes.CDLL(str(libs[0])), "scipy_sgemm_64_", None)
                if function is not None:
                    integer = ctypes.c_int64
                    pointer, data = ctypes.POINTER, ctypes.c_void_p
                    ints, single, char = pointer(integer), pointer(ctypes.c_float), pointer(ctypes.c_char)
                    function.restype = None
                    function.argtypes = [
                        char,
                        char,
                        ints,
                        ints,
                        ints,
                        single,
                        data,
                        ints,
                        data,
                        ints,
                        single,
                        data,
                        ints,
                    ]
                    found = (function, integer)
        except OSError:  # the library cannot be opened: numpy's products instead
            found = None
        _SGEMM.append(found)
    return _SGEMM[0]


def _taps_1d(gemm: Any, x: np.ndarray, per_tap: np.ndarray, y: np.ndarray, dilation: int, pad: int) -> None:
    """y[b, :, p] += per_tap[t] @ x[b, :, p + t·d − pad] for every tap t, as BLAS accumulating
    products (beta 1) reading the input window and writing the output piece where they lie.

    In BLAS's column-major terms, y[b] (C-ordered [O, L]) is an [L, O] matrix of leading dimension
    L, the window an [L', C] one of leading dimension x's row stride, the tap's [O, C] matrix a [C,
    O] one: y'[lo:hi] += window' · tap'. The same sums in the same order as a product followed by
    an addition per tap (bit for bit on kokoro's decoder convs; a BLAS may fuse the addition and
    differ in the last bit: OpenBLAS 0.3.30 on an AVX-512 EPYC, a 3-channel test shape), without
    the product's buffer and the addition's pass over the output: 12.0 against 16.6 ms for a
    128-channel, 11-tap conv over 7,201 positions (2026-12-05, 2 cores). ``gemm``: ``_blas_sgemm()``."""
    import ctypes

    gemm, c_int = gemm
    cout, cin = per_tap.shape[1:]
    length, in_length = y.shape[2], x.shape[2]
    row = x.strides[1] // 4
    ref = ctypes.byref
    no_transpose, one = ref(ctypes.c_char(b"N")), ref(ctypes.c_float(1.0))
    n_cols, k_inner, ld_tap, ld_out = ref(c_int(cout)), ref(c_int(cin)), ref(c_int(cin)), ref(c_int(length))
    ld_window = ref(c_int(row))
    for b in range(x.shape[0]):
        x_at = x.ctypes.data + b * x.strides[0]
        y_at = y.ctypes.data + b * y.strides[0]
        for t in range(per_tap.shape[0]):
            shift = t * dilation - pad
            lo, hi = max(0, -shift), min(length, in_length - shift)
            if lo >= hi:
                continue
            gemm(
                no_transpose,
                no_transpose,
                ref(c_int(hi - lo)),
                n_cols,
                k_inner,
                one,
                x_at + 4 * (lo + shift),
                ld_window,
                per_tap[t].ctypes.data,
                ld_tap,
                one,
                y_at + 4 * lo,
                ld_out,
            )


def _conv_valid(xp: Any, weight: Any, strides_: list[int], dil: list[int], g: int, out_sizes: list[int]) -> Any:
    """An unpadded grouped convolution whose output has ``out_sizes``: [N, O, *out_sizes] (one
    group: ``_conv_by_taps``)."""
    ks = list(weight.shape[2:])
    n, cin = xp.shape[:2]
    cout = weight.shape[0]
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
