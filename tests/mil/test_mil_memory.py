"""The MIL interpreter's memory: an intermediate is freed after its last reader ran.

Measured with tracemalloc (numpy reports its buffers to it), so the figure is the interpreter's
own allocations, independent of the machine: a chain of 40 element-wise ops on a 1 MB tensor.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from zoo.core.mil import MilProgram

CHAIN = 20  # mul then add, 20 times: 40 intermediates of one tensor's size each


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> MilProgram:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    def fn(x):
        for i in range(CHAIN):
            x = mb.mul(x=x, y=np.float32(1.0001), name=f"m{i}")
            x = mb.add(x=x, y=np.float32(0.5), name=f"a{i}")
        return x

    program = mb.program(input_specs=[mb.TensorSpec(shape=(512, 512))], opset_version=ct.target.iOS17)(fn)
    model = ct.convert(
        program,
        source="milinternal",
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32,
        pass_pipeline=ct.PassPipeline.EMPTY,
    )
    path = tmp_path_factory.mktemp("chain") / "chain.mlpackage"
    model.save(str(path))
    return MilProgram.load(path)


def _peak(program: MilProgram, x: np.ndarray) -> tuple[float, np.ndarray]:
    """(peak traced bytes during one run / the tensor's bytes, the output)."""
    tracemalloc.start()
    try:
        out = program.run({"x": x})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / x.nbytes, next(iter(out.values()))


def test_intermediates_are_freed_after_their_last_use(chain):
    x = np.ones((512, 512), np.float32)
    steps = chain.function().steps
    assert len(steps) == 2 * CHAIN
    # each step frees its input (the previous step's output), except the last, whose output is returned
    assert all(step.release == (steps[i - 1].outputs[0][0],) for i, step in enumerate(steps) if i)
    ratio, out = _peak(chain, x)
    expected = np.ones_like(x)
    for _ in range(CHAIN):
        expected = expected * np.float32(1.0001) + np.float32(0.5)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # measured: 3.0 (the value being read, the one being made, the returned copy); keeping every
    # intermediate would be about 2 * CHAIN = 40
    assert ratio < 4, f"peak {ratio:.1f}x the tensor over a chain of {2 * CHAIN} ops"

    # the mutation this test exists for: nothing released -> the peak grows with the chain
    saved = [step.release for step in steps]
    try:
        for step in steps:
            step.release = ()
        kept, _ = _peak(chain, x)
    finally:
        for step, release in zip(steps, saved):
            step.release = release
    assert kept > 2 * CHAIN - 2, f"without releases the peak was only {kept:.1f}x: the measurement cannot see a leak"


@pytest.mark.parametrize(
    "shape, weight, kwargs",
    [
        ((1, 8, 300), (16, 8, 7), {"strides": [1], "dilations": [1], "groups": 1, "pad_type": "same"}),
        ((2, 8, 301), (8, 1, 5), {"strides": [2], "dilations": [3], "groups": 8, "pad_type": "custom", "pad": [2, 3]}),
        ((1, 4, 40, 57), (6, 2, 3, 5), {"strides": [2, 3], "dilations": [1, 2], "groups": 2, "pad_type": "valid"}),
        ((2, 4, 40, 57), (6, 4, 3, 5), {"strides": [2, 3], "dilations": [1, 2], "groups": 1, "pad_type": "valid"}),
        ((2, 8, 301), (8, 8, 5), {"strides": [2], "dilations": [3], "groups": 1, "pad_type": "custom", "pad": [2, 3]}),
        ((1, 8, 301), (16, 8, 1), {"strides": [1], "dilations": [1], "groups": 1, "pad_type": "valid"}),
        # padding wider than the input: some taps meet no input position at all
        ((1, 3, 4), (5, 3, 7), {"strides": [1], "dilations": [2], "groups": 1, "pad_type": "custom", "pad": [9, 9]}),
        (
            (1, 3, 6, 5),
            (4, 3, 3, 3),
            {"strides": [2, 1], "dilations": [1, 1], "groups": 1, "pad_type": "custom", "pad": [2, 1, 0, 3]},
        ),
    ],
)
def test_a_conv_computed_in_pieces_equals_torch(monkeypatch, shape, weight, kwargs):
    """The conv kernel bounds what it holds (CONV_CHUNK_BYTES: the gathered taps of a grouped conv,
    the product buffer of a one-group conv): pieces along the output's last axis give torch's
    result, whatever the strides, dilations, groups, padding and batch."""
    import torch

    from zoo.core.mil.kernels import linalg as kernels

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(weight).astype(np.float32)
    b = rng.standard_normal(weight[0]).astype(np.float32)
    monkeypatch.setattr(kernels, "CONV_CHUNK_BYTES", 2048)  # many pieces
    got = kernels.conv(x, w, b, **kwargs)
    nsp = len(shape) - 2
    pads = kernels._conv_pads(
        kwargs["pad_type"], kwargs.get("pad"), list(shape[2:]), list(weight[2:]), kwargs["strides"], kwargs["dilations"]
    )
    xt = torch.nn.functional.pad(torch.from_numpy(x), [p for pair in reversed(pads) for p in pair])
    fn = torch.nn.functional.conv1d if nsp == 1 else torch.nn.functional.conv2d
    want = _torch_conv(fn, xt, w, b, kwargs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _torch_conv(fn, x, w, b, kwargs) -> np.ndarray:
    """torch's (transposed) convolution ``fn`` of the tensor ``x`` with the kernel's arguments."""
    import torch

    return fn(
        x,
        torch.from_numpy(w),
        torch.from_numpy(b),
        stride=kwargs["strides"],
        dilation=kwargs["dilations"],
        groups=kwargs["groups"],
    ).numpy()


def test_a_long_conv_allocates_pieces_not_every_tap_at_once(monkeypatch):
    """A one-group conv adds one tap's product at a time into its output; a grouped one gathers its
    taps in pieces of CONV_CHUNK_BYTES."""
    from zoo.core.mil.kernels import linalg as kernels

    x = np.ones((1, 32, 20000), np.float32)
    taps_mb = 32 * 11 * 20000 * 4 / 2**20  # 26.9 MB gathered at once
    out_mb = 32 * 20000 * 4 / 2**20  # 2.4 MB

    def peak_mb(w: np.ndarray, groups: int) -> float:
        tracemalloc.start()
        try:
            kernels.conv(x, w, pad_type="same", groups=groups)
            return tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()

    one_group, grouped = np.full((32, 32, 11), 0.01, np.float32), np.full((32, 16, 11), 0.01, np.float32)
    # measured (2026-12-05): 7.3 MB (the padded input, the output, one product, the weight by tap)
    assert peak_mb(one_group, 1) < 3 * out_mb + 1
    monkeypatch.setattr(kernels, "CONV_CHUNK_BYTES", 1 << 20)
    pieces = peak_mb(grouped, 2)
    monkeypatch.setattr(kernels, "CONV_CHUNK_BYTES", 1 << 40)
    whole = peak_mb(grouped, 2)
    # measured: 6.0 MB in pieces (padded input, output, 1 MB of taps and its product), 34.2 MB whole
    assert pieces < out_mb + 6, pieces
    assert whole > taps_mb, f"the whole-call measurement ({whole:.1f} MB) cannot see the taps: the test proves nothing"


@pytest.mark.parametrize(
    "shape,weight,kwargs",
    [
        ((1, 6, 9), (6, 4, 8), {"strides": [4], "dilations": [1], "groups": 1, "pad": [2, 2]}),
        ((2, 6, 19), (6, 3, 4), {"strides": [2], "dilations": [2], "groups": 2, "pad": [0, 1]}),
        ((1, 16, 33), (16, 2, 5), {"strides": [3], "dilations": [1], "groups": 4, "pad": [1, 0]}),
        ((2, 4, 5, 6), (4, 3, 3, 2), {"strides": [2, 3], "dilations": [1, 2], "groups": 1, "pad": [1, 0, 0, 1]}),
    ],
)
@pytest.mark.parametrize("chunk", [1, 300, 1 << 40])
def test_a_transposed_conv_made_a_slab_at_a_time_equals_torch(monkeypatch, shape, weight, kwargs, chunk):
    """conv_transpose computes every tap in one product, a slab of input positions at a time
    (CONV_CHUNK_BYTES), each slab added where its taps land: one position per slab, a few, or all
    at once give torch's result, whatever the strides, dilations, groups and crops."""
    import torch

    from zoo.core.mil.kernels import linalg as kernels

    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(weight).astype(np.float32)
    b = rng.standard_normal(weight[1] * kwargs["groups"]).astype(np.float32)
    monkeypatch.setattr(kernels, "CONV_CHUNK_BYTES", chunk)
    got = kernels.conv_transpose(x, w, b, pad_type="custom", **kwargs)
    nsp = len(shape) - 2
    fn = torch.nn.functional.conv_transpose1d if nsp == 1 else torch.nn.functional.conv_transpose2d
    full = _torch_conv(fn, torch.from_numpy(x), w, b, kwargs)
    pad = kwargs["pad"]
    want = full[
        (slice(None), slice(None)) + tuple(slice(pad[2 * i], full.shape[2 + i] - pad[2 * i + 1]) for i in range(nsp))
    ]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shape, weight, kwargs",
    [
        ((1, 16, 500), (8, 16, 11), {"dilations": [1], "pad_type": "custom", "pad": [5, 5]}),
        ((2, 8, 301), (8, 8, 5), {"dilations": [3], "pad_type": "custom", "pad": [2, 9]}),
        ((1, 3, 4), (5, 3, 7), {"dilations": [2], "pad_type": "custom", "pad": [9, 9]}),
    ],
)
def test_a_one_dimensional_conv_through_blas_equals_the_products_and_additions(monkeypatch, shape, weight, kwargs):
    """A 1-d conv at stride 1 accumulates each tap's product in BLAS (numpy's own sgemm, beta 1,
    reading the window and writing the output piece where they lie): the result of the same
    products made by numpy and added one by one (the path without that sgemm), within float32's
    summation bound. A BLAS may fuse the accumulating addition: bit for bit on the larger shapes,
    1 ulp on 3 of the smallest case's 50 values with OpenBLAS 0.3.30 on an AVX-512 EPYC
    (2026-12-05); a window shifted by one position is off by a whole term."""
    from zoo.core.mil.kernels import linalg as kernels

    if kernels._blas_sgemm() is None:
        pytest.skip("numpy is not linked to the OpenBLAS its wheels bundle: only the numpy path exists here")
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(weight).astype(np.float32)
    b = rng.standard_normal(weight[0]).astype(np.float32)
    args = {"strides": [1], "groups": 1, **kwargs}
    through_blas = kernels.conv(x, w, b, **args)
    strided = np.zeros((shape[0], shape[1], shape[2] * 2), np.float32)[..., ::2]  # not row-contiguous: numpy path
    strided[...] = x
    # channels read backwards or broadcast: not rows BLAS can read with a leading dimension (numpy's
    # products take them; against BLAS on a copy, float32 summation differences only)
    for view in (x[:, ::-1], np.broadcast_to(x[:, :1], x.shape)):
        got, want = kernels.conv(view, w, b, **args), kernels.conv(np.ascontiguousarray(view), w, b, **args)
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    monkeypatch.setattr(kernels, "_SGEMM", [None])
    # each value's rounding error is at most n·u·Σ|terms| (n terms: C·K products and the bias)
    terms = kernels.conv(np.abs(x), np.abs(w), np.abs(b), **args)
    bound = (weight[1] * weight[2] + 1) * 2.0**-24 * terms
    for numpy_path in (kernels.conv(x, w, b, **args), kernels.conv(strided, w, b, **args)):
        assert (np.abs(through_blas - numpy_path) <= bound).all()


def test_a_conv_weight_is_held_tap_by_tap_and_read_without_a_copy(tmp_path):
    """The loader holds a one-group conv's weight laid out tap by tap (the same values, [O, C, K]
    as a view): the kernel's per-tap matrices are that memory, not a copy made at each call."""
    import torch

    from zoo.core.host.defaults import save_component
    from zoo.core.plugin.spec import Variant
    from zoo.core.plugin.traceable import TensorSpec, Traceable

    conv = torch.nn.Conv1d(16, 24, 7, padding=3)
    x = np.random.default_rng(0).standard_normal((1, 16, 50)).astype(np.float32)
    path = tmp_path / "conv.mlpackage"
    save_component(
        {"main": Traceable(conv.eval(), [TensorSpec("x", (1, 16, 50))], ["y"], [{"x": x}])},
        Variant("v", precision="fp32"),
        path,
    )
    program = MilProgram.load(path)
    step = next(s for s in program.function().steps if s.op_type == "conv")
    weight = next(payload for param, kind, payload in step.args if param == "weight")
    assert np.array_equal(weight, conv.weight.detach().numpy())
    per_tap = np.moveaxis(weight.reshape(24, 16, 7), 2, 0)
    assert per_tap.flags.c_contiguous and np.shares_memory(per_tap, weight)
    want = conv(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(program.run({"x": x})["y"], want, rtol=1e-4, atol=1e-5)
