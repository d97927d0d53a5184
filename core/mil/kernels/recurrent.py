"""Recurrent layers (gru, lstm, rnn) unrolled step by step in float32."""

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
    """MIL lstm: x [T, B, I]; gates stacked in i, f, o, g order; returns (out, h, c)."""
    acts: dict[str, Callable[..., Any]] = {"sigmoid": sigmoid, "tanh": np.tanh, "relu": relu}

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
