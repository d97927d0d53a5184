"""Elementwise kernels: binary and unary arithmetic, comparisons, casts and activations."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import compiled
from .base import KERNELS, kernel

# ---------------------------------------------------------------- elementwise binary
_BINARY: dict[str, Callable[..., Any]] = {
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
_UNARY: dict[str, Callable[..., Any]] = {
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


for _op, _ufunc in _UNARY.items():
    KERNELS[_op] = _unary(_ufunc)


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
        if np.asarray(x).dtype == np.float32:  # every value the interpreter holds: compiled
            return compiled.gelu_tanh(x)
        return 0.5 * x * (1.0 + np.tanh(np.float32(np.sqrt(2.0 / np.pi)) * (x + np.float32(0.044715) * (x * x * x))))
    if mode == "SIGMOID_APPROXIMATION":
        return x * sigmoid(np.float32(1.702) * x)
    if np.asarray(x).dtype == np.float32:  # every value the interpreter holds: one compiled pass
        return compiled.gelu_exact(x)
    from scipy.special import erf as _erf

    # 0.5 * x * (1 + erf(x / sqrt 2)), evaluated in that order, in two arrays instead of five (the
    # voice encoder's calls: [1, 2000, 4096] floats each)
    t = np.divide(x, np.float32(np.sqrt(2.0)))
    _erf(t, out=t)
    np.add(t, 1.0, out=t)
    return np.multiply(0.5 * x, t, out=t)


@kernel("softmax")
def softmax(x: Any, axis: Any = -1, **_: Any) -> Any:
    return softmax_into(np.subtract(x, np.max(x, axis=int(axis), keepdims=True)), int(axis))


def softmax_into(shifted: Any, axis: int) -> Any:
    """exp(shifted) / Σ exp(shifted) along ``axis``, computed in ``shifted``'s own memory (the
    maximum already subtracted): attention over 2000 steps holds 4 M floats per head."""
    np.exp(shifted, out=shifted)
    return np.divide(shifted, np.sum(shifted, axis=axis, keepdims=True), out=shifted)


@kernel("softplus_parametric")
def softplus_parametric(x: Any, alpha: Any, beta: Any, **_: Any) -> Any:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return np.asarray(alpha).reshape(shape) * np.logaddexp(0, np.asarray(beta).reshape(shape) * x)


@kernel("clamped_relu")
def clamped_relu(x: Any, alpha: Any, beta: Any, **_: Any) -> Any:
    """min(beta, x) for x >= 0, min(beta, alpha * x) below."""
    return np.minimum(np.where(x >= 0, x, alpha * x), beta)


@kernel("thresholded_relu")
def thresholded_relu(x: Any, alpha: Any = 1.0, **_: Any) -> Any:
    return np.where(x >= alpha, x, 0).astype(np.asarray(x).dtype)
