"""Weights kept as fp16 (core/mil/half.py): their products against float32 products of the same
values, through the compiled loop (few rows, split between threads or not) and through blocks
widened for BLAS (many rows); the linear and conv kernels reading them."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.core.mil import KERNELS
from zoo.core.mil import half as half_mod
from zoo.core.mil.half import HalfMatrix


def _weight(rng, n, k):
    """fp16 values of every kind a trained weight holds: normal over several scales, subnormal, zero."""
    w = rng.standard_normal((n, k)) * np.exp(rng.uniform(-6, 1, (n, k)))
    w[rng.random((n, k)) < 0.01] = rng.standard_normal() * 3e-6  # fp16 subnormals
    w[rng.random((n, k)) < 0.01] = 0.0
    return w.astype(np.float16)


def _within_summation_error(got, x, w):
    """|got - x @ w.T| within what float32 summation in any order can reach: K * 2**-24 * |x| @ |w|.T
    (each of K additions rounds once; a fused multiply-add rounds less), plus float32's smallest step."""
    exact = x.astype(np.float64) @ w.astype(np.float64).T
    bound = x.shape[1] * 2.0**-24 * (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64).T) + 1e-45
    return bool(np.all(np.abs(got - exact) <= bound)), float(np.max(np.abs(got - exact) / bound))


@pytest.mark.parametrize("rows", [1, 5, half_mod.FUSED_ROWS, half_mod.FUSED_ROWS + 1, 40])
@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_product_is_the_float32_product_of_the_widened_weight(monkeypatch, rows, threads):
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    monkeypatch.setattr(half_mod, "BLOCK_VALUES", 300 * 65)  # a few blocks, the last one short
    rng = np.random.default_rng(rows)
    w = _weight(rng, 1001, 300)  # 300k values: split between threads
    x = rng.standard_normal((rows, 300)).astype(np.float32)
    got = HalfMatrix(w).product(x)
    assert got.shape == (rows, 1001) and got.dtype == np.float32
    ok, worst = _within_summation_error(got, x, w.astype(np.float32))
    assert ok, f"{worst:.2f} of the bound"
    if rows <= half_mod.FUSED_ROWS:  # the compiled loop: the same bits however it is split
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert np.array_equal(HalfMatrix(w).product(x), got)


def test_product_keeps_non_finite_weights_and_inputs():
    rng = np.random.default_rng(3)
    w = _weight(rng, 8, 64)
    w[1, 3], w[2, 5], w[3, 7] = np.inf, -np.inf, np.nan
    x = rng.standard_normal((2, 64)).astype(np.float32)
    x[1, 9] = np.nan
    got = HalfMatrix(w).product(x)
    want = x @ w.astype(np.float32).T
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert np.allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6)


def test_widened_is_the_stored_weight_and_bad_shapes_are_refused():
    w = _weight(np.random.default_rng(0), 6, 5).reshape(6, 5, 1, 1)
    held = HalfMatrix(w)
    assert held.nbytes == w.nbytes and held.shape == (6, 5, 1, 1)
    assert np.array_equal(held.widened(), w.astype(np.float32))
    with pytest.raises(ValueError, match="fp16"):
        HalfMatrix(w.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[N, K, 1"):
        HalfMatrix(np.zeros((4, 3, 2), np.float16))
    with pytest.raises(ValueError, match=r"\[M, 5\]"):
        held.product(np.zeros((2, 4), np.float32))


def test_linear_and_pointwise_conv_read_a_half_weight_as_its_float32_values():
    rng = np.random.default_rng(5)
    w = _weight(rng, 48, 32)
    bias = rng.standard_normal(48).astype(np.float32)
    x = rng.standard_normal((2, 7, 32)).astype(np.float32)
    want = KERNELS["linear"](x=x, weight=w.astype(np.float32), bias=bias)
    got = KERNELS["linear"](x=x, weight=HalfMatrix(w), bias=bias)
    assert got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-5)

    conv = KERNELS["conv"]
    w4 = w.reshape(48, 32, 1, 1)
    x4 = rng.standard_normal((2, 32, 1, 9)).astype(np.float32)  # a batch of 2, as the tts_lm's guidance paths
    for extra in ({}, {"strides": np.array([1, 2])}, {"pad_type": "custom", "pad": np.array([0, 0, 1, 1])}):
        want = conv(x=x4, weight=w4.astype(np.float32), bias=bias, **extra)
        got = conv(x=x4, weight=HalfMatrix(w4), bias=bias, **extra)
        assert got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-5), extra


def test_without_native_fp16_widening_products_go_through_blas(monkeypatch):
    """On an x86 CPU without F16C the compiled loop is never called (LLVM would need a helper numba
    does not link): every product widens blocks for BLAS, with the same values."""
    rng = np.random.default_rng(9)
    w = _weight(rng, 64, 48)
    x = rng.standard_normal((3, 48)).astype(np.float32)
    monkeypatch.setattr(half_mod, "_NATIVE", [False])

    def refuse(*_):
        raise AssertionError("the compiled loop was called")

    monkeypatch.setattr(half_mod.compiled, "half_product", refuse)
    ok, worst = _within_summation_error(HalfMatrix(w).product(x), x, w.astype(np.float32))
    assert ok, f"{worst:.2f} of the bound"


def test_native_fp16_widening_is_arm64_or_x86_with_f16c(monkeypatch):
    import platform

    from llvmlite import binding

    from zoo.core.mil.compiled import converts_fp16_natively

    for machine, features, want in (
        ("arm64", {}, True),
        ("x86_64", {"f16c": True, "avx2": True}, True),
        ("x86_64", {"f16c": False, "avx2": True}, False),
        ("AMD64", {}, False),
    ):
        monkeypatch.setattr(platform, "machine", lambda m=machine: m)
        monkeypatch.setattr(binding, "get_host_cpu_features", lambda f=features: f)
        assert converts_fp16_natively() is want, machine
