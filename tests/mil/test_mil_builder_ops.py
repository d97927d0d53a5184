"""MIL ops built directly with coremltools' builder, saved, loaded back and executed.

For ops torch never emits at these parameters (layer_norm over non-trailing axes, l2_norm
over a batch of rank-5 inputs), the ops added for coremltools' own op tests, and the
compression ops coremltools.optimize writes. Each expected value is computed here,
independently of the kernel, from the op's documented definition; the conformance run
(benchmarks/mil_conformance.py) adds coremltools' own cases.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import save_builder_program

from zoo.core.mil import MilProgram

RNG = np.random.default_rng(0)


def build(tmp_path, fn, inputs: dict, target: str = "iOS17", precision: str = "fp32", name: str = "p") -> MilProgram:
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    specs = {
        k: mb.placeholder(
            shape=v.shape,
            dtype=types.fp16 if v.dtype == np.float16 else (types.int32 if v.dtype.kind in "iu" else types.fp32),
        )
        for k, v in inputs.items()
    }
    path = save_builder_program(tmp_path / f"{name}.mlpackage", fn, list(specs.values()), target, precision)
    return MilProgram.load(path)


def run(program: MilProgram, inputs: dict) -> np.ndarray:
    function = program.function("main")
    named = dict(zip(function.inputs, inputs.values()))
    out = program.run(named)
    return out[function.outputs[0].name]


def layer_norm_reference(x, axes, gamma, beta, eps):
    """Explicitly: normalise over ``axes``; gamma[i, j] scales the element whose index along axes[0] is i, ..."""
    x = x.astype(np.float64)
    axes = sorted(a % x.ndim for a in axes)  # gamma's dims follow ascending axis order
    mean = x.mean(axis=tuple(axes), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=tuple(axes), keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    out = np.empty_like(y)
    for index in np.ndindex(x.shape):
        at = tuple(index[a] for a in axes)
        out[index] = y[index] * (gamma[at] if gamma is not None else 1.0) + (beta[at] if beta is not None else 0.0)
    return out


@pytest.mark.parametrize("axes", [[0, 2], [-2], [0, 1, 3], [2, 0], [3]])
def test_layer_norm_places_gamma_and_beta_at_their_axes(tmp_path, axes):
    """A wrong number with no error was the outcome before: gamma broadcast against trailing axes."""
    from coremltools.converters.mil import Builder as mb

    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    shape = [x.shape[a] for a in sorted(a % x.ndim for a in axes)]
    gamma = (RNG.standard_normal(shape) * 3).astype(np.float32)
    beta = RNG.standard_normal(shape).astype(np.float32)
    program = build(tmp_path, lambda x: mb.layer_norm(x=x, axes=axes, gamma=gamma, beta=beta, epsilon=1e-5), {"x": x})
    assert "layer_norm" in program.function().op_types()
    want = layer_norm_reference(x, axes, gamma, beta, 1e-5)
    np.testing.assert_allclose(run(program, {"x": x}), want, rtol=1e-5, atol=1e-5)


def test_ane_rmsnorm_layer_norm_at_its_axes_and_precision(tmp_path):
    """zoo.core.kit.ane.ChannelRMSNorm: layer_norm of [x, -x] over the last axis of (B, 1, L, 2C), fp16, no gamma."""
    import torch

    from zoo.core.host.defaults import save_component
    from zoo.core.kit.ane import ChannelRMSNorm
    from zoo.core.plugin.spec import Variant
    from zoo.core.plugin.traceable import TensorSpec, Traceable

    x = RNG.standard_normal((1, 16, 1, 6)).astype(np.float32)
    norm = ChannelRMSNorm(16, 1e-6).eval()
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(RNG.standard_normal(16).astype(np.float32)))
    traceable = Traceable(norm, [TensorSpec("x", x.shape)], ["y"], [{"x": x}])
    program = MilProgram.load(
        save_component({"main": traceable}, Variant("v", "fp16", "iOS18"), tmp_path / "n.mlpackage")
    )
    steps = [s for s in program.function().steps if s.op_type == "layer_norm"]
    assert steps and all(dtype == np.float16 for s in steps for _, dtype, _ in s.outputs)
    want = (
        x
        / np.sqrt((x.astype(np.float64) ** 2).mean(axis=1, keepdims=True) + 1e-6)
        * norm.weight.detach().numpy().reshape(1, -1, 1, 1)
    )
    got = program.run({"x": x})["y"]
    assert np.abs(got - want).max() / np.abs(want).max() < 4e-3  # fp16: a few units of 2^-11


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 4, 5), (2, 2, 3, 4, 5)])
def test_l2_norm_over_the_last_three_axes_plus_epsilon(tmp_path, shape):
    from coremltools.converters.mil import Builder as mb

    x = RNG.standard_normal(shape).astype(np.float32)
    program = build(tmp_path, lambda x: mb.l2_norm(x=x, epsilon=5.7), {"x": x})
    want = x / np.sqrt((x.astype(np.float64) ** 2).sum(axis=(-3, -2, -1), keepdims=True) + 5.7)
    np.testing.assert_allclose(run(program, {"x": x}), want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ layout ops
def test_depth_space_batch_ops_round_trip_and_match_their_definition(tmp_path):
    from coremltools.converters.mil import Builder as mb

    x = RNG.standard_normal((1, 8, 2, 3)).astype(np.float32)
    d2s = run(build(tmp_path, lambda x: mb.depth_to_space(x=x, block_size=2), {"x": x}, name="d2s"), {"x": x})
    # depth-column-row: out[c, 2h + i, 2w + j] = x[(2i + j) * C_out + c, h, w]
    c_out = 2
    for c, h, w, i, j in np.ndindex(c_out, 2, 3, 2, 2):
        assert d2s[0, c, 2 * h + i, 2 * w + j] == x[0, (2 * i + j) * c_out + c, h, w]
    back = run(build(tmp_path, lambda x: mb.space_to_depth(x=x, block_size=2), {"x": d2s}, name="s2d"), {"x": d2s})
    np.testing.assert_array_equal(back, x)
    y = RNG.standard_normal((1, 2, 4, 6)).astype(np.float32)
    s2b = run(
        build(
            tmp_path,
            lambda x: mb.space_to_batch(x=x, block_shape=[2, 2], paddings=[[0, 0], [2, 0]]),
            {"x": y},
            name="s2b",
        ),
        {"x": y},
    )
    assert s2b.shape == (4, 2, 2, 4)
    padded = np.pad(y, [(0, 0), (0, 0), (0, 0), (2, 0)])
    for i, j in np.ndindex(2, 2):
        np.testing.assert_array_equal(s2b[i * 2 + j], padded[0, :, i::2, j::2])
    b2s = run(
        build(
            tmp_path,
            lambda x: mb.batch_to_space(x=x, block_shape=[2, 2], crops=[[0, 0], [2, 0]]),
            {"x": s2b},
            name="b2s",
        ),
        {"x": s2b},
    )
    np.testing.assert_array_equal(b2s, y)


def test_pixel_shuffle_matches_torch(tmp_path):
    import torch
    from coremltools.converters.mil import Builder as mb

    x = RNG.standard_normal((1, 18, 2, 3)).astype(np.float32)
    got = run(build(tmp_path, lambda x: mb.pixel_shuffle(x=x, upscale_factor=3), {"x": x}), {"x": x})
    np.testing.assert_array_equal(got, torch.nn.PixelShuffle(3)(torch.from_numpy(x)).numpy())


def test_sliding_windows_reverse_sequence_one_hot_flatten(tmp_path):
    from coremltools.converters.mil import Builder as mb

    x = RNG.standard_normal((2, 7, 3)).astype(np.float32)
    win = run(
        build(tmp_path, lambda x: mb.sliding_windows(x=x, axis=1, size=3, stride=2), {"x": x}, name="w"), {"x": x}
    )
    assert win.shape == (2, 3, 3, 3)
    for k in range(3):
        np.testing.assert_array_equal(win[:, k], x[:, 2 * k : 2 * k + 3])
    lengths = np.array([3, 7], np.int32)
    rev = run(
        build(
            tmp_path,
            lambda x, n: mb.reverse_sequence(x=x, lengths=n, seq_axis=1, batch_axis=0),
            {"x": x, "n": lengths},
            name="r",
        ),
        {"x": x, "n": lengths},
    )
    np.testing.assert_array_equal(rev[0, :3], x[0, 2::-1])
    np.testing.assert_array_equal(rev[0, 3:], x[0, 3:])
    np.testing.assert_array_equal(rev[1], x[1, ::-1])
    idx = np.array([[0, 3], [2, 1]], np.int32)
    hot = run(
        build(
            tmp_path,
            lambda i: mb.one_hot(indices=i, one_hot_vector_size=4, axis=1, on_value=2.0, off_value=-1.0),
            {"i": idx},
            name="h",
        ),
        {"i": idx},
    )
    assert hot.shape == (2, 4, 2)
    for a, b in np.ndindex(2, 2):
        assert list(hot[a, :, b]) == [2.0 if k == idx[a, b] else -1.0 for k in range(4)]
    flat = run(build(tmp_path, lambda x: mb.flatten2d(x=x, axis=-1), {"x": x}, name="f"), {"x": x})
    np.testing.assert_array_equal(flat, x.reshape(14, 3))


def test_activations_clamped_and_thresholded_relu_and_lrn(tmp_path):
    import torch
    from coremltools.converters.mil import Builder as mb

    x = (RNG.standard_normal((1, 5, 4, 4)) * 3).astype(np.float32)
    clamped = run(build(tmp_path, lambda x: mb.clamped_relu(x=x, alpha=0.2, beta=2.5), {"x": x}, name="c"), {"x": x})
    np.testing.assert_allclose(clamped, np.where(x >= 0, np.minimum(x, 2.5), np.minimum(0.2 * x, 2.5)), rtol=1e-6)
    thresholded = run(build(tmp_path, lambda x: mb.thresholded_relu(x=x, alpha=1.5), {"x": x}, name="t"), {"x": x})
    np.testing.assert_array_equal(thresholded, np.where(x >= 1.5, x, 0))
    lrn = run(
        build(tmp_path, lambda x: mb.local_response_norm(x=x, size=4, alpha=0.1, beta=0.7, k=1.5), {"x": x}, name="l"),
        {"x": x},
    )
    want = torch.nn.LocalResponseNorm(4, alpha=0.1, beta=0.7, k=1.5)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(lrn, want, rtol=1e-5, atol=1e-6)
    # rank 3 [1, C, W]: CoreML's channels are axis -3, here of size 1: each element normalised by
    # itself (what coremltools' builder test expects; torch, over axis 1, would mix the C channels)
    x3 = (RNG.standard_normal((1, 3, 5)) * 3).astype(np.float32)
    lrn3 = run(
        build(
            tmp_path, lambda x: mb.local_response_norm(x=x, size=3, alpha=0.1, beta=0.7, k=1.5), {"x": x3}, name="l3"
        ),
        {"x": x3},
    )
    np.testing.assert_allclose(lrn3, x3 / (1.5 + 0.1 / 3 * x3**2) ** 0.7, rtol=1e-5)
    assert not np.allclose(
        lrn3, torch.nn.LocalResponseNorm(3, alpha=0.1, beta=0.7, k=1.5)(torch.from_numpy(x3)).numpy()
    )


# ------------------------------------------------------------------------------ compression ops
def _dense_weight_program(tmp_path, op, target, name):
    """A program whose only weight is produced by ``op()`` (a constexpr op), multiplied with the input."""
    from coremltools.converters.mil import Builder as mb

    x = np.ones((1,), np.float32)

    def fn(x):
        return mb.mul(x=op(), y=x)

    return build(tmp_path, fn, {"x": x}, target=target, name=name), x


def test_iOS16_palettized_quantized_sparse_weights_decompress(tmp_path):
    from coremltools.converters.mil import Builder as mb

    lut = RNG.standard_normal(16).astype(np.float32)
    idx = RNG.integers(0, 16, size=(3, 5))
    flat = idx.reshape(-1)
    packed = np.zeros((flat.size * 4 + 7) // 8, np.uint8)
    for i, v in enumerate(flat):  # 4-bit indices, least significant bits first
        for bit in range(4):
            if v >> bit & 1:
                packed[(i * 4 + bit) // 8] |= 1 << ((i * 4 + bit) % 8)
    program, x = _dense_weight_program(
        tmp_path,
        lambda: mb.constexpr_lut_to_dense(indices=packed, lut=lut, shape=np.array([3, 5], np.uint32)),
        "iOS16",
        "lut",
    )
    np.testing.assert_array_equal(run(program, {"x": x}), lut[idx])

    q = RNG.integers(0, 256, size=(4, 6)).astype(np.uint8)
    zp = RNG.integers(0, 256, size=4).astype(np.uint8)
    scale = RNG.random(4).astype(np.float32)
    program, x = _dense_weight_program(
        tmp_path,
        lambda: mb.constexpr_affine_dequantize(quantized_data=q, zero_point=zp, scale=scale, axis=0),
        "iOS16",
        "affine",
    )
    np.testing.assert_allclose(run(program, {"x": x}), scale[:, None] * (q.astype(np.float32) - zp[:, None]), rtol=1e-6)

    dense = RNG.standard_normal((4, 5)).astype(np.float32) * (RNG.random((4, 5)) > 0.5)
    bits = (dense.reshape(-1) != 0).astype(np.uint8)
    mask = np.packbits(np.pad(bits, (0, (-bits.size) % 8)), bitorder="little")
    program, x = _dense_weight_program(
        tmp_path,
        lambda: mb.constexpr_sparse_to_dense(
            nonzero_data=dense[dense != 0], mask=mask, shape=np.array([4, 5], np.uint32)
        ),
        "iOS16",
        "sparse",
    )
    np.testing.assert_array_equal(run(program, {"x": x}), dense)


def test_iOS18_blockwise_and_grouped_lut_weights_decompress(tmp_path):
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    data = RNG.integers(-8, 8, size=(4, 6)).astype(np.int8)
    scale = RNG.random((2, 3)).astype(np.float32)  # blocks of 2 x 2
    offset = RNG.integers(-2, 2, size=(2, 3)).astype(np.int8)
    program, x = _dense_weight_program(
        tmp_path, lambda: mb.constexpr_blockwise_shift_scale(data=data, scale=scale, offset=offset), "iOS18", "block"
    )
    want = np.empty((4, 6), np.float32)
    for i, j in np.ndindex(4, 6):
        want[i, j] = scale[i // 2, j // 2] * (data[i, j] - offset[i // 2, j // 2])
    np.testing.assert_allclose(run(program, {"x": x}), want, rtol=1e-6)

    indices = RNG.integers(0, 4, size=(6, 2)).astype(
        types.np_uint2_dtype if hasattr(types, "np_uint2_dtype") else np.uint8
    )
    lut = RNG.standard_normal((2, 1, 4, 1)).astype(np.float32)  # two tables along the first axis
    program, x = _dense_weight_program(
        tmp_path, lambda: mb.constexpr_lut_to_dense(indices=indices, lut=lut), "iOS18", "lut18"
    )
    want = np.array([[lut[i // 3, 0, int(indices[i, j]), 0] for j in range(2)] for i in range(6)], np.float32)
    np.testing.assert_array_equal(run(program, {"x": x}), want)


def test_lut_tables_along_the_first_axis_take_the_general_path_values():
    """Per-grouped-channel tables (groups along axis 0 only) are looked up block by block; the
    values are those of the general lookup (every axis's group index broadcast), in the table's
    dtype, and an index past the table is an error there too."""
    from zoo.core.mil.kernels import constexpr

    rng = np.random.default_rng(4)
    for shape, groups, palettes in (((32, 5), 2, 16), ((48, 3, 3), 3, 64), ((7,), 7, 4), ((16, 1, 9), 1, 256)):
        idx = rng.integers(0, palettes, size=shape).astype(np.uint8)
        lut = rng.standard_normal((groups,) + (1,) * (len(shape) - 1) + (palettes, 1)).astype(np.float16)
        got = constexpr._lut_iOS18(idx, lut)
        blocks = constexpr._block_index(idx.shape, lut.shape[: len(shape)])
        assert got.dtype == lut.dtype and np.array_equal(got, lut[blocks + (idx.astype(np.int64),)][..., 0])
    with pytest.raises(IndexError):
        constexpr._lut_iOS18(np.full((4, 2), 9, np.uint8), np.zeros((2, 1, 4, 1), np.float16))
    # an fp16 package's table, held as float32, decompresses to fp16 (the same values); a float32
    # table with any value fp16 cannot hold stays float32
    idx = rng.integers(0, 4, size=(8, 3)).astype(np.uint8)
    held = rng.standard_normal((2, 1, 4, 1)).astype(np.float16).astype(np.float32)
    got = constexpr.constexpr_lut_to_dense(indices=idx, lut=held)
    assert got.dtype == np.float16 and np.array_equal(got.astype(np.float32), constexpr._lut_iOS18(idx, held))
    wide = held.copy()
    wide[1, 0, 2, 0] += np.float32(1e-6)
    assert constexpr.constexpr_lut_to_dense(indices=idx, lut=wide).dtype == np.float32


def test_sub_byte_values_unpack_as_unpackbits_spreads_them():
    """Every width from 1 to 8 bits, both bit orders, counts that end inside a byte and inside an
    eight-value word, chunk boundaries included: the values numpy's bit-by-bit unpacking gives,
    and packed back, the bytes numpy's bit-by-bit packing gives."""
    from zoo.core.util import bits as bitsmod

    rng = np.random.default_rng(9)
    for width in range(1, 9):
        for count in (1, 7, 8, 9, 61, 1000):
            values = rng.integers(0, 1 << width, count).astype(np.uint8)
            for lsb in (True, False):
                spread = np.unpackbits(values.reshape(-1, 1), axis=1)[:, 8 - width :]
                if lsb:
                    spread = spread[:, ::-1]
                packed = np.packbits(spread.reshape(-1), bitorder="little" if lsb else "big")
                got = bitsmod.unpack_bits(packed, width, count, lsb_first=lsb)
                assert got.dtype == np.uint8 and np.array_equal(got, values), (width, count, lsb)
                assert np.array_equal(bitsmod.pack_bits(values, width, lsb_first=lsb), packed), (width, count, lsb)
        with pytest.raises(ValueError, match="fewer than"):
            bitsmod.unpack_bits(np.zeros(1, np.uint8), width, 9)
    old = bitsmod.CHUNK_GROUPS
    try:
        bitsmod.CHUNK_GROUPS = 3  # many chunks, the last one short
        values = rng.integers(0, 64, 1001).astype(np.uint8)
        spread = np.unpackbits(values.reshape(-1, 1), axis=1)[:, 2:]
        assert np.array_equal(bitsmod.unpack_bits(np.packbits(spread.reshape(-1)), 6, 1001, lsb_first=False), values)
        assert np.array_equal(bitsmod.pack_bits(values, 6, lsb_first=False), np.packbits(spread.reshape(-1)))
        with pytest.raises(ValueError, match="does not fit"):
            bitsmod.pack_bits(np.array([3, 64], np.uint8), 6)
    finally:
        bitsmod.CHUNK_GROUPS = old


#: every layer_norm the built-in plugins' packages contain, by layout: (who, x shape, affine)
PLUGIN_LAYER_NORMS = [
    ("pocket_tts transformer LayerNorm", (1, 7, 64), True),
    ("kokoro ALBERT LayerNorm", (1, 12, 48), True),
    ("kokoro AdaLayerNorm (affine from the style, applied after)", (1, 12, 40), False),
    ("ANE RMSNorm: layer_norm of [x, -x]", (2, 1, 5, 32), False),
    ("vibevoice sampler final RMSNorm: layer_norm of [x, -x]", (2, 128), False),
]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("who, shape, affine", PLUGIN_LAYER_NORMS, ids=[w for w, _, _ in PLUGIN_LAYER_NORMS])
def test_layer_norm_at_the_layouts_zoo_plugins_emit(tmp_path, who, shape, affine, precision):
    from coremltools.converters.mil import Builder as mb

    dtype = np.float16 if precision == "fp16" else np.float32  # fp16-typed tensors and constants: fp16 ops
    x = (RNG.standard_normal(shape) * 4).astype(dtype)
    gamma = (RNG.standard_normal(shape[-1]) * 2).astype(dtype) if affine else None
    beta = RNG.standard_normal(shape[-1]).astype(dtype) if affine else None
    kwargs = {"gamma": gamma, "beta": beta} if affine else {}
    program = build(
        tmp_path, lambda x: mb.layer_norm(x=x, axes=[-1], epsilon=dtype(1e-5), **kwargs), {"x": x}, precision=precision
    )
    step = next(s for s in program.function().steps if s.op_type == "layer_norm")
    assert step.outputs[0][1] == dtype
    got = run(program, {"x": x})
    x, gamma, beta = (None if a is None else a.astype(np.float32) for a in (x, gamma, beta))
    want = layer_norm_reference(x, [-1], gamma, beta, 1e-5)
    tolerance = 1e-5 if precision == "fp32" else 8 * 2.0**-11  # fp16: a few units of its roundoff
    assert np.abs(got - want).max() / np.abs(want).max() <= tolerance, who


def test_a_compressed_weight_is_expanded_once_within_the_bound_and_every_call_past_it(tmp_path, monkeypatch):
    """MilProgram keeps a constexpr op's expansion between calls (FOLD_BYTES): the same outputs as
    expanding at every call, the kernel run once; with no room it runs at every call; a substituted
    constant is read, never a stale expansion."""
    from coremltools.converters.mil import Builder as mb

    from zoo.core.mil import program as program_module

    data = RNG.integers(-8, 8, size=(4, 6)).astype(np.int8)
    scale = RNG.random((2, 3)).astype(np.float32)
    program, x = _dense_weight_program(
        tmp_path, lambda: mb.constexpr_blockwise_shift_scale(data=data, scale=scale), "iOS18", "fold"
    )
    step = next(s for s in program.function("main").steps if s.op_type.startswith("constexpr_"))
    calls = []
    kernel = step.kernel
    monkeypatch.setattr(step, "kernel", lambda **kw: calls.append(1) or kernel(**kw))
    outs = {}
    for room in (0, 1 << 20):
        monkeypatch.setattr(program_module.MilProgram, "FOLD_BYTES", room)
        program._folded.clear()
        program._folded_bytes = 0
        calls.clear()
        outs[room] = [run(program, {"x": x * k}) for k in (1.0, 2.0, 3.0)]
        assert len(calls) == (3 if room == 0 else 1), (room, calls)
    for a, b in zip(*outs.values()):
        assert np.array_equal(a, b)
    const = next(name for name, reads in program.function("main").const_reads.items() if reads[0][0] == 0)
    previous = program.substitute(const, np.zeros_like(data))
    assert not run(program, {"x": x}).any()  # the zero weight, not the kept expansion
    program.substitute(const, previous)
    np.testing.assert_array_equal(run(program, {"x": x}), outs[0][0])


def test_fp16_rounding_leaves_the_float32_values_it_reads(tmp_path):
    """The interpreter rounds an fp16 result into a new array: ``cast`` to fp16 returns its float32
    input itself, which a later float32 op, and the caller, still hold unrounded."""
    from coremltools.converters.mil import Builder as mb

    x = (RNG.standard_normal((4, 64)) * 3).astype(np.float32)  # none of them an fp16 value

    def fn(x):
        half = mb.cast(x=x, dtype="fp16")
        doubled = mb.cast(x=mb.add(x=half, y=half), dtype="fp32", name="doubled")
        return doubled, mb.mul(x=x, y=np.float32(2.0), name="exact")

    program = build(tmp_path, fn, {"x": x})
    given = x.copy()
    out = program.run({"x": x})
    assert np.array_equal(x, given)  # the caller's array as it was
    assert np.array_equal(out["exact"], given * 2)  # read after the cast: still the float32 input
    assert np.array_equal(out["doubled"], given.astype(np.float16).astype(np.float32) * 2)


def test_a_decompressed_weight_only_products_read_is_held_as_a_stored_weight_is(tmp_path):
    """A constexpr op's fp16 output read only as a linear's (or pointwise conv's) weight is kept as
    fp16 (half.HalfMatrix), one read only as a multi-tap conv's weight laid out tap by tap, one any
    other op reads widened as before; the outputs are those of the widened expansion (up to
    float32 summation order, then fp16 rounding)."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    from zoo.core.mil.half import HalfMatrix

    def lut_weight(shape: tuple[int, ...]):
        indices = RNG.integers(0, 16, size=shape).astype(types.np_uint4_dtype)
        lut = RNG.standard_normal((1,) * len(shape) + (16, 1)).astype(np.float16)
        return lambda: mb.constexpr_lut_to_dense(indices=indices, lut=lut)

    linear_w, conv_w, shared_w = lut_weight((24, 32)), lut_weight((8, 4, 3)), lut_weight((32, 32))
    x = RNG.standard_normal((2, 32)).astype(np.float16)
    s = RNG.standard_normal((1, 4, 10)).astype(np.float16)

    def fn(x, s):
        y = mb.linear(x=x, weight=linear_w(), name="y")
        c = mb.conv(x=s, weight=conv_w(), pad_type="same", name="c")
        w = shared_w()
        z = mb.add(x=mb.linear(x=x, weight=w), y=mb.reduce_sum(x=w, axes=[0]), name="z")
        return y, c, z

    program = build(tmp_path, fn, {"x": x, "s": s}, target="iOS18", precision="fp16", name="forms")
    steps = [step for step in program.function().steps if step.op_type.startswith("constexpr_")]
    assert sorted(f for step in steps for f in step.forms.values()) == ["half", "taps"]
    got = program.run({"x": x, "s": s})
    held = [value for values in program._folded.values() for value in values]
    assert sum(isinstance(v, HalfMatrix) for v in held) == 1
    taps = [v for v in held if isinstance(v, np.ndarray) and v.ndim == 3]
    assert len(taps) == 1 and not taps[0].flags.c_contiguous  # [O, C, K] viewed over [K, O, C] memory
    for step in steps:
        step.forms.clear()
    program._folded.clear()
    program._folded_bytes = 0
    want = program.run({"x": x, "s": s})
    assert not any(isinstance(v, HalfMatrix) for values in program._folded.values() for v in values)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=2.0**-10, atol=0, err_msg=name)


@pytest.mark.parametrize("reader", ["linear", "mul"])
def test_a_non_finite_expansion_is_reported_at_every_call_and_never_kept(tmp_path, reader):
    """A decompressed weight holding an inf (held as fp16 for a linear, widened for a mul) is
    reported as the first non-finite value at each call, and not kept between calls."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    indices = np.zeros((4, 8), types.np_uint4_dtype)
    indices[1, 2] = 3
    lut = RNG.standard_normal((1, 1, 16, 1)).astype(np.float16)
    lut[0, 0, 3, 0] = np.inf
    x = RNG.standard_normal((2, 8)).astype(np.float16)

    def fn(x):
        weight = mb.constexpr_lut_to_dense(indices=indices, lut=lut, name="w")
        if reader == "linear":
            return mb.linear(x=x, weight=weight)
        return mb.mul(x=x, y=mb.reduce_sum(x=weight, axes=[0], keep_dims=True))

    program = build(tmp_path, fn, {"x": x}, target="iOS18", precision="fp16", name=f"inf_{reader}")
    step = next(s for s in program.function().steps if s.op_type.startswith("constexpr_"))
    assert step.forms == ({step.outputs[0][0]: "half"} if reader == "linear" else {})
    for _ in range(2):
        program.run({"x": x})
        assert program.first_nonfinite is not None and "constexpr_lut_to_dense" in program.first_nonfinite
        assert not program._folded
