"""Recurrent layers unrolled step by step in float32: lstm (MIL's gru and rnn are not executed:
the interpreter reports them as unsupported ops)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .base import _ints, kernel
from .elementwise import relu, sigmoid


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
    """MIL lstm: x [T, B, I]; gates stacked in i, f, o, g order; returns (out, h, c).

    As coremltools' own reference for the op (ops/tests/iOS14/test_recurrent.py, which its CI runs
    against CoreML): every activation takes its default parameters (scaled_tanh is tanh, linear
    passes through, hard_sigmoid is clip(0.2x + 0.5, 0, 1)); ``clip`` bounds the cell state after
    each update; ``reverse`` emits its sequence in the order it ran (last input first), while
    ``bidirectional`` aligns its backward half with the input (as torch's LSTM does)."""
    acts: dict[str, Callable[..., Any]] = {
        "sigmoid": sigmoid,
        "tanh": np.tanh,
        "scaled_tanh": np.tanh,
        "relu": relu,
        "hard_sigmoid": lambda v: np.clip(0.2 * v + 0.5, 0, 1),
        "linear": lambda v: v,
    }

    def run(projected: Any, h: Any, c: Any, w_hh: Any, peep: Any) -> tuple[Any, Any, Any]:
        """Directions side by side on a leading axis D (bidirectional: forward and the reversed
        backward pass in lockstep, one batched product a step): projected [T, D, B, 4H] (the
        input's share of every step's gates, computed in one product: only h @ w_hh.T waits on the
        previous step), h and c [D, B, H], w_hh [D, 4H, H], peep [D, 1, 3H] or None."""
        hidden = w_hh.shape[-1]
        w_hh_t = np.ascontiguousarray(np.swapaxes(w_hh, -1, -2))
        rec, cell, act = acts[recurrent_activation], acts[cell_activation], acts[activation]
        outs = np.empty(projected.shape[:-1] + (hidden,), np.result_type(projected, h))
        for t in range(projected.shape[0]):
            z = projected[t] + np.matmul(h, w_hh_t)
            if peep is None:  # i, f and o through one activation call
                ifo, g = rec(z[..., : 3 * hidden]), cell(z[..., 3 * hidden :])
                c = ifo[..., hidden : 2 * hidden] * c + ifo[..., :hidden] * g
                if clip is not None:
                    c = np.clip(c, -float(clip), float(clip))
                h = ifo[..., 2 * hidden :] * act(c)
            else:
                i, f, o, g = (z[..., k * hidden : (k + 1) * hidden] for k in range(4))
                i = rec(i + c * peep[..., :hidden])
                f = rec(f + c * peep[..., hidden : 2 * hidden])
                c = f * c + i * cell(g)
                if clip is not None:
                    c = np.clip(c, -float(clip), float(clip))
                h = rec(o + c * peep[..., 2 * hidden :]) * act(c)
            outs[t] = h
        return outs, h, c

    def project(xs: Any, w_ih: Any, b: Any) -> Any:
        # one [T·B, I] x [I, 4H] product (numpy runs a [T, B, I] operand as T small ones)
        out = (xs.reshape(-1, xs.shape[-1]) @ w_ih.T).reshape(xs.shape[:-1] + (w_ih.shape[0],))
        return out if b is None else out + b

    hidden = weight_hh.shape[1]
    if direction == "bidirectional":
        both = (bias is None) == (bias_back is None) and (peephole is None) == (peephole_back is None)
        if not both:  # one direction with a bias or peephole the other lacks: zeros stand in
            bias, bias_back = (np.zeros(4 * hidden, x.dtype) if v is None else v for v in (bias, bias_back))
            peephole, peephole_back = (
                np.zeros(3 * hidden, x.dtype) if v is None else v for v in (peephole, peephole_back)
            )
        projected = np.stack([project(x, weight_ih, bias), project(x[::-1], weight_ih_back, bias_back)], axis=1)
        h0 = np.stack([initial_h[:, :hidden], initial_h[:, hidden:]])
        c0 = np.stack([initial_c[:, :hidden], initial_c[:, hidden:]])
        peep = None if peephole is None else np.stack([peephole, peephole_back])[:, None, :]
        outs, hs, cs = run(projected, h0, c0, np.stack([weight_hh, weight_hh_back]), peep)
        out_f, out_b = outs[:, 0], outs[::-1, 1]
        out = np.concatenate([out_f, out_b], axis=-1)
        h = np.concatenate([hs[0], hs[1]], axis=-1)
        c = np.concatenate([cs[0], cs[1]], axis=-1)
        if not output_sequence:
            out = np.concatenate([out_f[-1:], out_b[:1]], axis=-1)
    else:
        xs = x[::-1] if direction == "reverse" else x
        peep = None if peephole is None else peephole[None, None, :]
        outs, hs, cs = run(
            project(xs, weight_ih, bias)[:, None], initial_h[None], initial_c[None], weight_hh[None], peep
        )
        out, h, c = outs[:, 0], hs[0], cs[0]
        if not output_sequence:  # the last step run
            out = out[-1:]
    return out, h, c


@kernel("crop")
def crop(x: Any, crop_height: Any, crop_width: Any, **_: Any) -> Any:
    (top, bottom), (left, right) = _ints(crop_height), _ints(crop_width)
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
