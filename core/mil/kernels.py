"""numpy implementations of MIL operations.

Each kernel receives the op's inputs by name — tensors as numpy arrays (floats
already widened to float32 by the interpreter), constant parameters as numpy
scalars/arrays or Python strings — and returns one array or a tuple of arrays.
Parameter semantics follow the MIL op definitions of coremltools
(``coremltools/converters/mil/mil/ops/defs``); the interpreter rounds every
result to the dtype the program declares.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

KERNELS: dict[str, Callable[..., Any]] = {}


def kernel(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            KERNELS[name] = fn
        return fn

    return register


def _ints(v: Any) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _axis(axis: Any, rank: int) -> int:
    a = int(axis)
    return a + rank if a < 0 else a


# ---------------------------------------------------------------- elementwise binary
_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "real_div": np.true_divide,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "pow": np.power,
    "mod": np.mod,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}


def _binary(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(x: Any, y: Any, **_: Any) -> Any:
        return fn(x, y)

    return run


for _name, _fn in _BINARY.items():
    KERNELS[_name] = _binary(_fn)


@kernel("floor_div")
def floor_div(x: Any, y: Any, **_: Any) -> Any:
    return (
        np.floor_divide(x, y)
        if np.asarray(x).dtype.kind in "iu" and np.asarray(y).dtype.kind in "iu"
        else np.floor(np.true_divide(x, y))
    )


# ----------------------------------------------------------------- elementwise unary
_UNARY = {
    "abs": np.abs,
    "acos": np.arccos,
    "asin": np.arcsin,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "ceil": np.ceil,
    "cos": np.cos,
    "cosh": np.cosh,
    "exp": np.exp,
    "exp2": np.exp2,
    "floor": np.floor,
    "round": np.round,
    "sign": np.sign,
    "sin": np.sin,
    "sinh": np.sinh,
    "sqrt": np.sqrt,
    "square": np.square,
    "tan": np.tan,
    "tanh": np.tanh,
    "logical_not": np.logical_not,
    "identity": lambda x: x,
}


def _unary(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(x: Any, **_: Any) -> Any:
        return fn(x)

    return run


for _name, _fn in _UNARY.items():
    KERNELS[_name] = _unary(_fn)


@kernel("erf")
def erf(x: Any, **_: Any) -> Any:
    from scipy.special import erf as _erf

    return _erf(x)


@kernel("log")
def log(x: Any, epsilon: Any = 1e-45, **_: Any) -> Any:
    return np.log(x + epsilon)


@kernel("rsqrt")
def rsqrt(x: Any, epsilon: Any = 1e-12, **_: Any) -> Any:
    return 1.0 / np.sqrt(x + epsilon)


@kernel("inverse")
def inverse(x: Any, epsilon: Any = 1e-4, **_: Any) -> Any:
    return 1.0 / (x + epsilon)


@kernel("clip")
def clip(x: Any, alpha: Any, beta: Any, **_: Any) -> Any:
    return np.minimum(np.maximum(x, alpha), beta)


@kernel("threshold")
def threshold(x: Any, alpha: Any, **_: Any) -> Any:
    return np.maximum(x, alpha)


@kernel("cast")
def cast(x: Any, dtype: str = "fp32", **_: Any) -> Any:
    # the interpreter converts to the declared output dtype; float -> int truncates like astype
    if dtype.startswith(("int", "uint")):
        return np.trunc(x) if np.asarray(x).dtype.kind == "f" else x
    return x


# ---------------------------------------------------------------------- activations
@kernel("relu")
def relu(x: Any, **_: Any) -> Any:
    return np.maximum(x, 0)


@kernel("relu6")
def relu6(x: Any, **_: Any) -> Any:
    return np.clip(x, 0, 6)


@kernel("leaky_relu")
def leaky_relu(x: Any, alpha: Any = 0.01, **_: Any) -> Any:
    return np.where(x >= 0, x, x * alpha)


@kernel("elu")
def elu(x: Any, alpha: Any = 1.0, **_: Any) -> Any:
    return np.where(x > 0, x, alpha * (np.exp(x) - 1))


@kernel("sigmoid")
def sigmoid(x: Any, **_: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


@kernel("sigmoid_hard")
def sigmoid_hard(x: Any, alpha: Any = 0.2, beta: Any = 0.5, **_: Any) -> Any:
    return np.clip(alpha * x + beta, 0, 1)


@kernel("silu")
def silu(x: Any, **_: Any) -> Any:
    return x / (1.0 + np.exp(-x))


@kernel("softplus")
def softplus(x: Any, **_: Any) -> Any:
    return np.logaddexp(0, x)


@kernel("softsign")
def softsign(x: Any, **_: Any) -> Any:
    return x / (1 + np.abs(x))


@kernel("scaled_tanh")
def scaled_tanh(x: Any, alpha: Any = 1.0, beta: Any = 1.0, **_: Any) -> Any:
    return alpha * np.tanh(beta * x)


@kernel("linear_activation")
def linear_activation(x: Any, alpha: Any = 1.0, beta: Any = 0.0, **_: Any) -> Any:
    return alpha * x + beta


@kernel("prelu")
def prelu(x: Any, alpha: Any, **_: Any) -> Any:
    a = np.asarray(alpha).reshape((1, -1) + (1,) * (x.ndim - 2))
    return np.where(x >= 0, x, x * a)


@kernel("gelu")
def gelu(x: Any, mode: str = "EXACT", **_: Any) -> Any:
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(np.float32(np.sqrt(2.0 / np.pi)) * (x + np.float32(0.044715) * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * sigmoid(np.float32(1.702) * x)
    from scipy.special import erf as _erf

    return 0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))


@kernel("softmax")
def softmax(x: Any, axis: Any = -1, **_: Any) -> Any:
    a = int(axis)
    e = np.exp(x - np.max(x, axis=a, keepdims=True))
    return e / np.sum(e, axis=a, keepdims=True)


@kernel("softplus_parametric")
def softplus_parametric(x: Any, alpha: Any, beta: Any, **_: Any) -> Any:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return np.asarray(alpha).reshape(shape) * np.logaddexp(0, np.asarray(beta).reshape(shape) * x)


# ---------------------------------------------------------------------- reductions
def _reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(x: Any, axes: Any = None, keep_dims: Any = False, **_: Any) -> Any:
        ax = None if axes is None else tuple(_ints(axes))
        return fn(x, axis=ax, keepdims=bool(keep_dims))

    return run


KERNELS.update(
    {
        "reduce_sum": _reduce(np.sum),
        "reduce_mean": _reduce(np.mean),
        "reduce_max": _reduce(np.max),
        "reduce_min": _reduce(np.min),
        "reduce_prod": _reduce(np.prod),
        "reduce_sum_square": _reduce(lambda x, axis, keepdims: np.sum(x * x, axis=axis, keepdims=keepdims)),
        "reduce_l1_norm": _reduce(lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims)),
        "reduce_l2_norm": _reduce(lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))),
        "reduce_log_sum": _reduce(lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims))),
        "reduce_log_sum_exp": _reduce(
            lambda x, axis, keepdims: (
                np.log(np.sum(np.exp(x - np.max(x, axis=axis, keepdims=True)), axis=axis, keepdims=keepdims))
                + (
                    np.max(x, axis=axis, keepdims=True)
                    if keepdims
                    else np.squeeze(np.max(x, axis=axis, keepdims=True), axis=axis)
                )
            )
        ),
    }
)


def _reduce_arg(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(x: Any, axis: Any = -1, keep_dims: Any = False, **_: Any) -> Any:
        out = fn(x, axis=int(axis))
        return np.expand_dims(out, int(axis)) if keep_dims else out

    return run


KERNELS["reduce_argmax"] = _reduce_arg(np.argmax)
KERNELS["reduce_argmin"] = _reduce_arg(np.argmin)


# ------------------------------------------------------------------- normalisation
@kernel("layer_norm")
def layer_norm(x: Any, axes: Any = None, gamma: Any = None, beta: Any = None, epsilon: Any = 1e-5, **_: Any) -> Any:
    """Normalise over ``axes``; gamma and beta have the shape of x at those axes (in ascending axis
    order, whatever order ``axes`` lists them in) and scale the elements at those axes, wherever
    they are — not only trailing ones."""
    ax = sorted({_axis(a, x.ndim) for a in _ints(axes)}) if axes is not None else list(range(x.ndim))
    mean = np.mean(x, axis=tuple(ax), keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=tuple(ax), keepdims=True)
    y = centred / np.sqrt(var + epsilon)

    def placed(param: Any) -> Any:
        return np.asarray(param).reshape([x.shape[a] if a in ax else 1 for a in range(x.ndim)])

    if gamma is not None:
        y = y * placed(gamma)
    if beta is not None:
        y = y + placed(beta)
    return y


@kernel("instance_norm")
def instance_norm(x: Any, gamma: Any = None, beta: Any = None, epsilon: Any = 1e-5, **_: Any) -> Any:
    ax = tuple(range(2, x.ndim))
    mean = np.mean(x, axis=ax, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=ax, keepdims=True)
    y = (x - mean) / np.sqrt(var + epsilon)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if gamma is not None:
        y = y * np.asarray(gamma).reshape(shape)
    if beta is not None:
        y = y + np.asarray(beta).reshape(shape)
    return y


@kernel("batch_norm")
def batch_norm(
    x: Any, mean: Any, variance: Any, gamma: Any = None, beta: Any = None, epsilon: Any = 1e-5, **_: Any
) -> Any:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(variance.reshape(shape) + epsilon)
    if gamma is not None:
        y = y * gamma.reshape(shape)
    if beta is not None:
        y = y + beta.reshape(shape)
    return y


@kernel("l2_norm")
def l2_norm(x: Any, epsilon: Any = 1e-6, **_: Any) -> Any:
    """x / sqrt(sum(x^2) + epsilon) over the last three dimensions, the leading ones being batch."""
    ax = tuple(range(x.ndim - 3, x.ndim))
    return x / np.sqrt(np.sum(x * x, axis=ax, keepdims=True) + epsilon)


# ------------------------------------------------------------------ linear algebra
@kernel("linear")
def linear(x: Any, weight: Any, bias: Any = None, **_: Any) -> Any:
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
    scores = np.matmul(query, np.swapaxes(key, -1, -2)) / np.float32(np.sqrt(query.shape[-1]))
    if attn_mask is not None:
        if attn_mask.dtype == np.bool_:
            scores = np.where(attn_mask, scores, -np.inf)
        else:
            scores = scores + attn_mask
    return np.matmul(softmax(scores, axis=-1), value)


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
    in_sizes = list(x.shape[2:])
    # every group at once per kernel tap, as one batched matrix product: [g, O/g, C/g] @ [g, C/g, N*L]
    xs = np.moveaxis(x.reshape(n, g, cg, -1), 0, 2).reshape(g, cg, -1)
    wt = weight.reshape(g, cg, og, -1)  # [g, C/g, O/g, prod(K)]
    for t, offs in enumerate(itertools.product(*[range(k) for k in ks])):
        contrib = np.matmul(np.swapaxes(wt[..., t], 1, 2), xs).reshape(g, og, n, *in_sizes)
        contrib = np.moveaxis(contrib, 2, 0).reshape(n, g * og, *in_sizes)
        index = [slice(None), slice(None)] + [
            slice(o * d[i], o * d[i] + (in_sizes[i] - 1) * s[i] + 1, s[i]) for i, o in enumerate(offs)
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
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[mode])


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


# ------------------------------------------------------------------------ resizing
@kernel("upsample_nearest_neighbor")
def upsample_nearest_neighbor(x: Any, scale_factor_height: Any = 1, scale_factor_width: Any = 1, **_: Any) -> Any:
    sh, sw = float(scale_factor_height), float(scale_factor_width)
    h, w = x.shape[-2:]
    oh, ow = int(np.floor(h * sh)), int(np.floor(w * sw))
    rows = np.minimum(np.floor(np.arange(oh) / sh).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(np.arange(ow) / sw).astype(np.int64), w - 1)
    return x[..., rows[:, None], cols[None, :]]


def _linear_weights(
    out_size: int, in_size: int, scale: float, align_corners: bool, half_pixel: bool
) -> tuple[Any, Any, Any]:
    o = np.arange(out_size, dtype=np.float64)
    if align_corners and out_size > 1:
        src = o * (in_size - 1) / (out_size - 1)
    elif half_pixel:
        src = np.maximum((o + 0.5) / scale - 0.5, 0)
    else:
        src = o / scale
    lo = np.clip(np.floor(src).astype(np.int64), 0, in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = (src - lo).astype(np.float32)
    return lo, hi, frac


@kernel("upsample_bilinear")
def upsample_bilinear(
    x: Any,
    scale_factor_height: Any = 1,
    scale_factor_width: Any = 1,
    align_corners: Any = False,
    half_pixel_centers: Any = None,
    **_: Any,
) -> Any:
    sh, sw = float(scale_factor_height), float(scale_factor_width)
    h, w = x.shape[-2:]
    oh, ow = int(np.floor(h * sh)), int(np.floor(w * sw))
    half = (not bool(align_corners)) if half_pixel_centers is None else bool(half_pixel_centers)
    r0, r1, rf = _linear_weights(oh, h, sh, bool(align_corners), half)
    c0, c1, cf = _linear_weights(ow, w, sw, bool(align_corners), half)
    top = x[..., r0, :] * (1 - rf)[:, None] + x[..., r1, :] * rf[:, None]
    return top[..., c0] * (1 - cf) + top[..., c1] * cf


# ----------------------------------------------------------------------- recurrent
@kernel("lstm")
def lstm(
    x: Any,
    initial_h: Any,
    initial_c: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias: Any = None,
    peephole: Any = None,
    weight_ih_back: Any = None,
    weight_hh_back: Any = None,
    bias_back: Any = None,
    peephole_back: Any = None,
    direction: str = "forward",
    output_sequence: Any = False,
    recurrent_activation: str = "sigmoid",
    cell_activation: str = "tanh",
    activation: str = "tanh",
    clip: Any = None,
    **_: Any,
) -> Any:
    """MIL lstm: x [T, B, I]; gates stacked in i, f, o, g order; returns (out, h, c)."""
    acts = {"sigmoid": sigmoid, "tanh": np.tanh, "relu": relu}

    def run(xs: Any, h: Any, c: Any, w_ih: Any, w_hh: Any, b: Any, peep: Any) -> tuple[Any, Any, Any]:
        hidden = w_hh.shape[1]
        outs = []
        for t in range(xs.shape[0]):
            z = xs[t] @ w_ih.T + h @ w_hh.T
            if b is not None:
                z = z + b
            i, f, o, g = (z[:, k * hidden : (k + 1) * hidden] for k in range(4))
            if peep is not None:
                i = i + c * peep[:hidden]
                f = f + c * peep[hidden : 2 * hidden]
            if clip is not None:
                i, f, o, g = (np.clip(v, -float(clip), float(clip)) for v in (i, f, o, g))
            i, f = acts[recurrent_activation](i), acts[recurrent_activation](f)
            g = acts[cell_activation](g)
            c = f * c + i * g
            if peep is not None:
                o = o + c * peep[2 * hidden :]
            o = acts[recurrent_activation](o)
            h = o * acts[activation](c)
            outs.append(h)
        return np.stack(outs), h, c

    hidden = weight_hh.shape[1]
    if direction == "bidirectional":
        h0, c0 = initial_h[:, :hidden], initial_c[:, :hidden]
        hb0, cb0 = initial_h[:, hidden:], initial_c[:, hidden:]
        out_f, hf, cf = run(x, h0, c0, weight_ih, weight_hh, bias, peephole)
        out_b, hb, cb = run(x[::-1], hb0, cb0, weight_ih_back, weight_hh_back, bias_back, peephole_back)
        out_b = out_b[::-1]
        out = np.concatenate([out_f, out_b], axis=-1)
        h = np.concatenate([hf, hb], axis=-1)
        c = np.concatenate([cf, cb], axis=-1)
        if not output_sequence:
            out = np.concatenate([out_f[-1:], out_b[:1]], axis=-1)
    else:
        xs = x[::-1] if direction == "reverse" else x
        out, h, c = run(xs, initial_h, initial_c, weight_ih, weight_hh, bias, peephole)
        if direction == "reverse":
            out = out[::-1]
        if not output_sequence:
            out = out[-1:] if direction != "reverse" else out[:1]
    return out, h, c


@kernel("crop")
def crop(x: Any, crop_height: Any, crop_width: Any, **_: Any) -> Any:
    (top, bottom), (left, right) = _ints(crop_height), _ints(crop_width)
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


# ------------------------------------------------------------- more activations and layout ops
@kernel("clamped_relu")
def clamped_relu(x: Any, alpha: Any, beta: Any, **_: Any) -> Any:
    """min(beta, x) for x >= 0, min(beta, alpha * x) below."""
    return np.minimum(np.where(x >= 0, x, alpha * x), beta)


@kernel("thresholded_relu")
def thresholded_relu(x: Any, alpha: Any = 1.0, **_: Any) -> Any:
    return np.where(x >= alpha, x, 0).astype(np.asarray(x).dtype)


@kernel("local_response_norm")
def local_response_norm(x: Any, size: Any, alpha: Any = 1e-4, beta: Any = 0.75, k: Any = 1.0, **_: Any) -> Any:
    """x / (k + alpha/size * sum of x^2 over channels c - size//2 .. c + (size-1)//2)^beta (axis 1)."""
    size = int(size)
    sq = np.asarray(x, np.float32) ** 2
    pad = [(0, 0)] * sq.ndim
    pad[1] = (size // 2, (size - 1) // 2)
    padded = np.pad(sq, pad)
    window = sum(padded[:, i : i + x.shape[1]] for i in range(size))
    return x / np.power(k + alpha / size * window, beta)


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


@kernel("pixel_shuffle")
def pixel_shuffle(x: Any, upscale_factor: Any, **_: Any) -> Any:
    """[n, C f^2, H, W] -> [n, C, H f, W f], as torch.nn.PixelShuffle."""
    f = int(upscale_factor)
    n, c, h, w = x.shape
    y = np.reshape(x, (n, c // (f * f), f, f, h, w)).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (f * f), h * f, w * f)


@kernel("depth_to_space")
def depth_to_space(x: Any, block_size: Any, **_: Any) -> Any:
    """[n, C b^2, H, W] -> [n, C, H b, W b], depth-column-row order (TensorFlow's, NCHW)."""
    b = int(block_size)
    n, c, h, w = x.shape
    y = np.reshape(x, (n, b, b, c // (b * b), h, w)).transpose(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


@kernel("space_to_depth")
def space_to_depth(x: Any, block_size: Any, **_: Any) -> Any:
    """The inverse of depth_to_space: [n, C, H, W] -> [n, C b^2, H / b, W / b]."""
    b = int(block_size)
    n, c, h, w = x.shape
    y = np.reshape(x, (n, c, h // b, b, w // b, b)).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


@kernel("space_to_batch")
def space_to_batch(x: Any, block_shape: Any, paddings: Any, **_: Any) -> Any:
    """Pad H and W, then move each (i, j) position of a block_shape block into its own batch group."""
    b0, b1 = _ints(block_shape)
    (t, bt), (left, right) = np.asarray(paddings, np.int64).reshape(2, 2)
    x = np.pad(x, [(0, 0), (0, 0), (int(t), int(bt)), (int(left), int(right))])
    n, c, h, w = x.shape
    y = np.reshape(x, (n, c, h // b0, b0, w // b1, b1)).transpose(3, 5, 0, 1, 2, 4)
    return y.reshape(b0 * b1 * n, c, h // b0, w // b1)


@kernel("batch_to_space")
def batch_to_space(x: Any, block_shape: Any, crops: Any, **_: Any) -> Any:
    """The inverse of space_to_batch, then ``crops`` removed from H and W."""
    b0, b1 = _ints(block_shape)
    (t, bt), (left, right) = np.asarray(crops, np.int64).reshape(2, 2)
    nb, c, h, w = x.shape
    n = nb // (b0 * b1)
    y = np.reshape(x, (b0, b1, n, c, h, w)).transpose(2, 3, 4, 0, 5, 1).reshape(n, c, h * b0, w * b1)
    return y[:, :, int(t) : h * b0 - int(bt), int(left) : w * b1 - int(right)]
