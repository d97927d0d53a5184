"""Resizing and spatial re-layouts: upsampling, crops, pixel shuffle, depth/space/batch moves."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import _ints, kernel


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
