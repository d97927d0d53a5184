"""Op coverage of the MIL interpreter.

Each case is a tiny torch module converted with coremltools (through zoo's own
convert path), saved, loaded back from disk and executed by the interpreter;
the result must match torch (fp32: ≤ 1e-5 relative; fp16: within fp16
rounding). Every case also asserts that the op it is meant to cover really is in
the saved program, so a case cannot silently test something else.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from zoo.core.host.defaults import save_component
from zoo.core.mil import KERNELS, MilError, MilProgram, UnsupportedOp
from zoo.core.mil.half import HalfMatrix
from zoo.core.plugin.spec import Variant
from zoo.core.plugin.traceable import StateSpec, TensorSpec, Traceable

RNG = np.random.default_rng(0)


def rand(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def convert(
    tmp_path,
    module: nn.Module,
    inputs: dict,
    precision="fp32",
    target="iOS17",
    states=(),
    name="m",
    dtypes=None,
    outputs=None,
) -> MilProgram:
    specs = [
        TensorSpec(k, tuple(v.shape), (dtypes or {}).get(k, "int32" if v.dtype.kind in "iu" else "float32"))
        for k, v in inputs.items()
    ]
    n_out = outputs or 1
    traceable = Traceable(module.eval(), specs, [f"out{i}" for i in range(n_out)], [inputs], states=list(states))
    path = tmp_path / f"{name}.mlpackage"
    save_component({"main": traceable}, Variant("v", precision=precision, target=target), path)
    return MilProgram.load(path)


def torch_out(module: nn.Module, inputs: dict) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(v) for v in inputs.values()))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    scale = max(np.max(np.abs(want)), 1e-12)
    return float(np.max(np.abs(got - want)) / scale)


class Fn(nn.Module):
    def __init__(self, fn, **params):
        super().__init__()
        self.fn = fn
        for k, v in params.items():
            setattr(self, k, v)

    def forward(self, *args):
        return self.fn(self, *args)


def case(op, fn, inputs, **params):
    return pytest.param(op, fn, inputs, params, id=f"{op}-{fn.__name__ if hasattr(fn, '__name__') else ''}")


def _lin(self, x):
    return self.lin(x)


def _conv(self, x):
    return self.conv(x)


CASES = [
    ("linear", lambda s, x: s.lin(x), {"x": rand(2, 5, 8)}, {"lin": nn.Linear(8, 6)}),
    ("matmul", lambda s, x, y: x @ y, {"x": rand(2, 3, 4, 5), "y": rand(2, 3, 5, 6)}, {}),
    ("matmul", lambda s, x, y: x @ y.transpose(-1, -2), {"x": rand(1, 4, 5, 8), "y": rand(1, 4, 7, 8)}, {}),
    (
        "conv",
        lambda s, x: s.conv(x),
        {"x": rand(1, 6, 20)},
        {"conv": nn.Conv1d(6, 4, 5, stride=2, padding=3, dilation=2)},
    ),
    ("conv", lambda s, x: s.conv(x), {"x": rand(1, 6, 20)}, {"conv": nn.Conv1d(6, 6, 3, groups=3, padding=1)}),
    (
        "conv",
        lambda s, x: s.conv(x),
        {"x": rand(1, 4, 9, 11)},
        {"conv": nn.Conv2d(4, 8, (3, 2), stride=(2, 1), padding=(1, 0))},
    ),
    ("conv", lambda s, x: s.conv(x), {"x": rand(1, 8, 1, 7)}, {"conv": nn.Conv2d(8, 16, 1)}),
    (
        "conv_transpose",
        lambda s, x: s.conv(x),
        {"x": rand(1, 6, 9)},
        {"conv": nn.ConvTranspose1d(6, 4, 8, stride=4, padding=2)},
    ),
    (
        "conv_transpose",
        lambda s, x: s.conv(x),
        {"x": rand(1, 6, 9)},
        {"conv": nn.ConvTranspose1d(6, 6, 4, stride=2, groups=2)},
    ),
    (
        "conv_transpose",
        lambda s, x: s.conv(x),
        {"x": rand(1, 4, 5, 6)},
        {"conv": nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)},
    ),
    ("layer_norm", lambda s, x: s.ln(x), {"x": rand(2, 7, 16, scale=3)}, {"ln": nn.LayerNorm(16)}),
    ("instance_norm", lambda s, x: s.norm(x), {"x": rand(1, 5, 12)}, {"norm": nn.InstanceNorm1d(5, affine=True)}),
    ("softmax", lambda s, x: torch.softmax(x, dim=-1), {"x": rand(2, 3, 9, scale=4)}, {}),
    ("gelu", lambda s, x: F.gelu(x), {"x": rand(4, 16, scale=3)}, {}),
    ("gelu", lambda s, x: F.gelu(x, approximate="tanh"), {"x": rand(4, 16, scale=3)}, {}),
    ("silu", lambda s, x: F.silu(x), {"x": rand(4, 16, scale=3)}, {}),
    ("sigmoid", lambda s, x: torch.sigmoid(x), {"x": rand(4, 16, scale=3)}, {}),
    ("tanh", lambda s, x: torch.tanh(x), {"x": rand(4, 16, scale=3)}, {}),
    ("relu", lambda s, x: F.relu(x), {"x": rand(4, 16)}, {}),
    ("leaky_relu", lambda s, x: F.leaky_relu(x, 0.2), {"x": rand(4, 16)}, {}),
    ("elu", lambda s, x: F.elu(x), {"x": rand(4, 16)}, {}),
    ("softplus", lambda s, x: F.softplus(x), {"x": rand(4, 16, scale=4)}, {}),
    ("sin", lambda s, x: torch.sin(x), {"x": rand(3, 10, scale=5)}, {}),
    ("cos", lambda s, x: torch.cos(x), {"x": rand(3, 10, scale=5)}, {}),
    ("exp", lambda s, x: torch.exp(x), {"x": rand(3, 10)}, {}),
    ("log", lambda s, x: torch.log(x.abs() + 0.1), {"x": rand(3, 10)}, {}),
    ("sqrt", lambda s, x: torch.sqrt(x.abs()), {"x": rand(3, 10)}, {}),
    ("rsqrt", lambda s, x: torch.rsqrt(x.abs() + 0.5), {"x": rand(3, 10)}, {}),
    ("floor", lambda s, x: x - torch.floor(x), {"x": rand(3, 10, scale=5)}, {}),
    ("abs", lambda s, x: torch.abs(x), {"x": rand(3, 10)}, {}),
    ("clip", lambda s, x: torch.clamp(x, -0.5, 0.7), {"x": rand(3, 10)}, {}),
    ("add", lambda s, x, y: x + y, {"x": rand(3, 1, 5), "y": rand(4, 5)}, {}),
    ("sub", lambda s, x, y: x - y, {"x": rand(3, 5), "y": rand(3, 5)}, {}),
    ("mul", lambda s, x, y: x * y, {"x": rand(3, 5), "y": rand(1, 5)}, {}),
    ("real_div", lambda s, x, y: x / (y.abs() + 1), {"x": rand(3, 5), "y": rand(3, 5)}, {}),
    ("pow", lambda s, x: x.abs() ** 1.7, {"x": rand(3, 5)}, {}),
    ("maximum", lambda s, x, y: torch.maximum(x, y), {"x": rand(3, 5), "y": rand(3, 5)}, {}),
    ("minimum", lambda s, x, y: torch.minimum(x, y), {"x": rand(3, 5), "y": rand(3, 5)}, {}),
    ("select", lambda s, x, y: torch.where(x > y, x, y * 2), {"x": rand(3, 5), "y": rand(3, 5)}, {}),
    ("less", lambda s, x, y: torch.where(x < y, 1.0, 0.0), {"x": rand(3, 5), "y": rand(3, 5)}, {}),
    ("equal", lambda s, x: (torch.round(x) == 0).float(), {"x": rand(3, 5)}, {}),
    ("reduce_sum", lambda s, x: x.sum(dim=-1), {"x": rand(3, 5, 6)}, {}),
    ("reduce_mean", lambda s, x: x.mean(dim=(1, 2), keepdim=True), {"x": rand(3, 5, 6)}, {}),
    ("reduce_max", lambda s, x: x.amax(dim=1), {"x": rand(3, 5, 6)}, {}),
    ("reduce_min", lambda s, x: x.amin(dim=1), {"x": rand(3, 5, 6)}, {}),
    ("reduce_argmax", lambda s, x: torch.argmax(x, dim=-1).float(), {"x": rand(3, 5, 6)}, {}),
    ("reshape", lambda s, x: x.reshape(2, 3, 10), {"x": rand(6, 10)}, {}),
    ("transpose", lambda s, x: x.permute(2, 0, 1), {"x": rand(2, 3, 4)}, {}),
    ("slice_by_index", lambda s, x: x[:, 1:7:2, -3:], {"x": rand(2, 9, 5)}, {}),
    ("concat", lambda s, x, y: torch.cat([x, y, x], dim=1), {"x": rand(2, 3, 4), "y": rand(2, 5, 4)}, {}),
    ("split", lambda s, x: x.split([2, 3, 1], dim=1)[1] * 2, {"x": rand(2, 6, 4)}, {}),
    ("stack", lambda s, x, y: torch.stack([x, y], dim=1), {"x": rand(2, 4), "y": rand(2, 4)}, {}),
    (
        "gather",
        lambda s, ids: s.emb(ids),
        {"ids": np.array([[3, 0, 9, 4]], dtype=np.int32)},
        {"emb": nn.Embedding(10, 6)},
    ),
    (
        "gather_along_axis",
        lambda s, x, i: torch.gather(x, 1, i.long()),
        {"x": rand(3, 6), "i": np.array([[0, 5], [2, 2], [1, 4]], dtype=np.int32)},
        {},
    ),
    ("cumsum", lambda s, x: torch.cumsum(x, dim=1), {"x": rand(2, 8)}, {}),
    (
        "scatter_along_axis",
        lambda s, x, i, u: x.scatter(1, i.long(), u),
        {"x": rand(3, 6), "i": np.array([[0, 5], [2, 1], [4, 3]], dtype=np.int32), "u": rand(3, 2)},
        {},
    ),
    (
        "scatter_along_axis",
        lambda s, x, i, u: x.scatter_add(1, i.long(), u),
        {"x": rand(3, 6), "i": np.array([[0, 0], [2, 1], [4, 4]], dtype=np.int32), "u": rand(3, 2)},
        {},
    ),
    (
        "scatter_nd",
        lambda s, x, i, u: x.index_put((i.long(),), u, accumulate=True),
        {"x": rand(5, 3), "i": np.array([4, 0, 4], dtype=np.int32), "u": rand(3, 3)},
        {},
    ),
    (
        "scatter_nd",
        lambda s, x, i, j, u: x.index_put((i.long(), j.long()), u, accumulate=True),
        {
            "x": rand(4, 5),
            "i": np.array([0, 3, 0], dtype=np.int32),
            "j": np.array([1, 4, 1], dtype=np.int32),
            "u": rand(3),
        },
        {},
    ),
    (
        "gather_nd",
        lambda s, x, i, j: x[i.long(), j.long()],
        {"x": rand(4, 5, 2), "i": np.array([0, 3, 2], dtype=np.int32), "j": np.array([1, 4, 0], dtype=np.int32)},
        {},
    ),
    ("pad", lambda s, x: F.pad(x, (2, 3), value=0.5), {"x": rand(1, 3, 6)}, {}),
    ("pad", lambda s, x: F.pad(x, (2, 1), mode="reflect"), {"x": rand(1, 3, 6)}, {}),
    ("pad", lambda s, x: F.pad(x, (2, 1), mode="replicate"), {"x": rand(1, 3, 6)}, {}),
    ("cast", lambda s, x: (x * 3).int().float(), {"x": rand(2, 8)}, {}),
    ("tile", lambda s, x: x.repeat(2, 3), {"x": rand(2, 3)}, {}),
    ("expand_dims", lambda s, x: x.unsqueeze(1) * 2, {"x": rand(2, 3)}, {}),
    ("squeeze", lambda s, x: x.squeeze(1) * 2, {"x": rand(2, 1, 3)}, {}),
    (
        "upsample_nearest_neighbor",
        lambda s, x: F.interpolate(x, scale_factor=2, mode="nearest"),
        {"x": rand(1, 3, 4, 5)},
        {},
    ),
    ("lstm", lambda s, x: s.lstm(x)[0], {"x": rand(1, 7, 5)}, {"lstm": nn.LSTM(5, 4, batch_first=True)}),
    (
        "lstm",
        lambda s, x: s.lstm(x)[0],
        {"x": rand(1, 7, 5)},
        {"lstm": nn.LSTM(5, 4, batch_first=True, bidirectional=True)},
    ),
]


@pytest.mark.parametrize("op,fn,inputs,params", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_op_matches_torch_fp32(tmp_path, op, fn, inputs, params):
    torch.manual_seed(0)
    module = Fn(fn, **params)
    program = convert(tmp_path, module, inputs)
    assert op in program.function().op_types(), f"{op} not in program: {program.function().op_types()}"
    got = program.run(inputs)["out0"]
    want = torch_out(module, inputs)[0]
    assert got.shape == want.shape
    assert rel_err(got, want) <= 1e-5


FP16_CASES = [
    c
    for c in CASES
    if c[0] in ("linear", "conv", "conv_transpose", "layer_norm", "softmax", "gelu", "matmul", "cumsum")
]


@pytest.mark.parametrize("op,fn,inputs,params", FP16_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(FP16_CASES)])
def test_op_matches_torch_fp16_within_rounding(tmp_path, op, fn, inputs, params):
    torch.manual_seed(0)
    module = Fn(fn, **params)
    program = convert(tmp_path, module, inputs, precision="fp16")
    types = program.function().op_types()
    assert op in types and "cast" in types  # fp32 I/O around an fp16 body
    got = program.run(inputs)["out0"]
    want = torch_out(module, inputs)[0]
    # a few fp16 ulps (2**-10 relative) through the op and the input/weight rounding
    assert rel_err(got, want) <= 8 * 2**-10
    assert rel_err(got, want) > 0  # really computed in fp16, not fp32


@pytest.mark.parametrize("mode", ["update", "add", "max"])
def test_scatter_built_in_mil(tmp_path, mode):
    """No torch op converts to MIL `scatter`; build the program with coremltools' MIL builder instead."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    indices = np.array([4, 0, 2], dtype=np.int32)
    updates = rand(3, 3)

    @mb.program(input_specs=[mb.TensorSpec(shape=(5, 3))], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.scatter(data=x, indices=indices, updates=updates, axis=0, mode=mode)

    model = ct.convert(
        prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17, compute_precision=ct.precision.FLOAT32
    )
    path = tmp_path / "scatter.mlpackage"
    model.save(str(path))
    program = MilProgram.load(path)
    assert "scatter" in program.function().op_types()
    x = rand(5, 3)
    want = x.copy()
    if mode == "update":
        want[indices] = updates
    else:
        {"add": np.add, "max": np.maximum}[mode].at(want, indices, updates)
    (got,) = program.run({next(iter(program.function().inputs)): x}).values()
    assert rel_err(got, want) <= 1e-6


def test_sdpa_on_ios18(tmp_path):
    module = Fn(lambda s, q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m > 0))
    inputs = {"q": rand(1, 2, 3, 8), "k": rand(1, 2, 5, 8), "v": rand(1, 2, 5, 8), "m": rand(1, 1, 3, 5) + 1.0}
    program = convert(tmp_path, module, inputs, target="iOS18")
    assert "scaled_dot_product_attention" in program.function().op_types()
    assert rel_err(program.run(inputs)["out0"], torch_out(module, inputs)[0]) <= 1e-5


def test_fp16_overflow_is_reported_like_coreml_stores_it(tmp_path):
    module = Fn(lambda s, x: torch.tanh(x * 300.0 * 300.0))
    inputs = {"x": np.array([[1.0, -1.0, 1e-3]], dtype=np.float32)}
    program = convert(tmp_path, module, inputs, precision="fp16")
    out = program.run(inputs)["out0"]
    assert np.isfinite(out).all()  # tanh(inf) = 1: the overflow is hidden in the output ...
    assert program.first_nonfinite is not None and "mul" in program.first_nonfinite  # ... but reported
    fp32 = convert(tmp_path, module, inputs, name="fp32")
    fp32.run(inputs)
    assert fp32.first_nonfinite is None


def test_unsupported_op_names_type_and_location(tmp_path, monkeypatch):
    module = Fn(lambda s, x: F.gelu(x) + 1)
    inputs = {"x": rand(2, 3)}
    path = tmp_path / "g.mlpackage"
    save_component(
        {"main": Traceable(module, [TensorSpec("x", (2, 3))], ["out0"], [inputs])}, Variant("v", precision="fp32"), path
    )
    monkeypatch.delitem(KERNELS, "gelu")
    with pytest.raises(UnsupportedOp, match=r"gelu.*function 'main'.*op #\d+"):
        MilProgram.load(path)


def test_bad_inputs_are_refused(tmp_path):
    module = Fn(lambda s, x: x * 2)
    program = convert(tmp_path, module, {"x": rand(2, 3)})
    with pytest.raises(MilError, match="missing"):
        program.run({})
    with pytest.raises(MilError, match="shape"):
        program.run({"x": rand(3, 3)})


def _two_functions_one_weight(tmp_path, rows: int) -> tuple[nn.Linear, Traceable, Traceable, MilProgram]:
    """A package whose functions ``first`` (x W + b) and ``second`` (relu of it, x of ``rows``
    rows) share one Linear's weight."""
    lin = nn.Linear(4, 4)
    a = Traceable(Fn(lambda s, x: s.lin(x), lin=lin), [TensorSpec("x", (1, 4))], ["y"], [{"x": rand(1, 4)}])
    b = Traceable(
        Fn(lambda s, x: torch.relu(s.lin(x)), lin=lin), [TensorSpec("x", (rows, 4))], ["y"], [{"x": rand(rows, 4)}]
    )
    path = tmp_path / "multi.mlpackage"
    save_component({"first": a, "second": b}, Variant("v", precision="fp32"), path)
    return lin, a, b, MilProgram.load(path)


def test_multifunction_package(tmp_path):
    _, a, b, program = _two_functions_one_weight(tmp_path, rows=3)
    assert set(program.functions) == {"first", "second"}
    for name, t in (("first", a), ("second", b)):
        x = t.examples[0]
        assert rel_err(program.run(x, name)["y"], t.run(x)["y"]) <= 1e-5


def test_a_weight_two_functions_share_is_loaded_once(tmp_path):
    """The milproto loader gives each function its own copy of a shared weight: MilProgram keeps
    one (a linear's weight as its fp16 bits: ``HalfMatrix``), which both functions read."""
    lin = nn.Linear(256, 128)
    a = Traceable(Fn(lambda s, x: s.lin(x), lin=lin), [TensorSpec("x", (1, 256))], ["y"], [{"x": rand(1, 256)}])
    b = Traceable(Fn(lambda s, x: s.lin(x) * 2, lin=lin), [TensorSpec("x", (2, 256))], ["y"], [{"x": rand(2, 256)}])
    path = tmp_path / "shared.mlpackage"
    save_component({"first": a, "second": b}, Variant("v", precision="fp16"), path)
    program = MilProgram.load(path)

    def weights(fn):
        return [
            payload
            for step in program.functions[fn].steps
            for _, kind, payload in step.args
            if kind == "const" and isinstance(payload, HalfMatrix) and payload.shape == (128, 256)
        ]

    first, second = weights("first"), weights("second")
    assert len(first) == len(second) == 1 and first[0] is second[0] and first[0].nbytes == 128 * 256 * 2
    for name, t in (("first", a), ("second", b)):
        assert rel_err(program.run(t.examples[0], name)["y"], t.run(t.examples[0])["y"]) <= 1e-2


def test_a_weight_read_by_several_ops_is_held_once(tmp_path):
    """One function reading a weight several times (an unrolled loop: vibevoice's sampler runs its
    head five times) gets one variable from the loader for every read: MilProgram holds it once
    (a linear's weight as its fp16 bits), and each read computes with it."""
    lin = nn.Linear(256, 256)
    t = Traceable(
        Fn(lambda s, x: s.lin(torch.relu(s.lin(torch.relu(s.lin(x))))), lin=lin),
        [TensorSpec("x", (1, 256))],
        ["y"],
        [{"x": rand(1, 256)}],
    )
    path = tmp_path / "reused.mlpackage"
    save_component({"main": t}, Variant("v", precision="fp16"), path)
    program = MilProgram.load(path)
    reads = [
        payload
        for step in program.function().steps
        for _, kind, payload in step.args
        if kind == "const" and isinstance(payload, HalfMatrix) and payload.shape == (256, 256)
    ]
    assert len(reads) == 3 and all(r is reads[0] for r in reads) and reads[0].nbytes == 256 * 256 * 2
    assert rel_err(program.run(t.examples[0])["y"], t.run(t.examples[0])["y"]) <= 1e-2


def test_a_substituted_weight_is_read_by_every_function_until_restored(tmp_path):
    lin, _, _, program = _two_functions_one_weight(tmp_path, rows=1)
    weight = next(name for name in program.functions["first"].const_reads if "weight" in name)
    x = rand(1, 4)
    before = {fn: program.run({"x": x}, fn)["y"] for fn in ("first", "second")}
    doubled = 2 * lin.weight.detach().numpy()
    previous = program.substitute(weight, doubled)
    with torch.no_grad():
        want = x @ doubled.T + lin.bias.numpy()
    assert rel_err(program.run({"x": x}, "first")["y"], want) <= 1e-5
    assert rel_err(program.run({"x": x}, "second")["y"], np.maximum(want, 0)) <= 1e-5
    program.substitute(weight, previous)
    assert all(np.array_equal(program.run({"x": x}, fn)["y"], before[fn]) for fn in before)
    with pytest.raises(MilError, match="no constant"):
        program.substitute("no_such_weight", doubled)


class MaskBlendCache(nn.Module):
    """A KV-cache-like fp16 state written with an in-place mask blend: converts correctly."""

    def __init__(self):
        super().__init__()
        self.register_buffer("cache", torch.zeros(1, 2, 6, dtype=torch.float16))

    def forward(self, new, pos):
        slots = torch.arange(6, dtype=torch.int32).reshape(1, 1, 6)
        mask = (slots == pos.reshape(1, 1, 1)).to(torch.float16)
        self.cache.mul_(1 - mask)
        self.cache.add_(new.reshape(1, 2, 1) * mask)
        return self.cache.sum(dim=1) * 1.0


class IndexWriteCache(MaskBlendCache):
    """The trap: ``buf[:, :, pos] = new`` with a tensor position."""

    def forward(self, new, pos):
        self.cache[:, :, pos] = new.reshape(1, 2, 1)
        return self.cache.sum(dim=1) * 1.0


def _run_stateful(tmp_path, module_cls):
    example = {"new": rand(1, 2).astype(np.float16), "pos": np.array([1], dtype=np.int32)}
    program = convert(
        tmp_path,
        module_cls(),
        example,
        precision="fp16",
        target="iOS18",
        states=[StateSpec("cache", (1, 2, 6), "float16")],
        name=module_cls.__name__,
        dtypes={"new": "float16"},
    )
    module, state, diffs = module_cls(), program.make_state(), []
    for step in range(4):
        inputs = {"new": rand(1, 2).astype(np.float16), "pos": np.array([step], dtype=np.int32)}
        want = torch_out(module, inputs)[0].astype(np.float32)
        got = program.run(inputs, state=state)["out0"].astype(np.float32)
        diffs.append(float(np.max(np.abs(got - want))))
    return program, diffs, state


def test_state_written_with_mask_blend_matches_torch(tmp_path):
    program, diffs, state = _run_stateful(tmp_path, MaskBlendCache)
    assert {"read_state", "coreml_update_state"} <= set(program.function().op_types())
    assert max(diffs) <= 2e-3  # fp16 state
    assert np.count_nonzero(state["cache"][0, 0]) == 4  # four steps wrote four slots


def test_fp16_state_held_as_its_fp16_values(tmp_path):
    """An fp16 state is held as float32 holding fp16 values (as every fp16 value in the interpreter):
    an initial value is rounded to fp16 on the way in, and a run reads back what it wrote."""
    program, _, _ = _run_stateful(tmp_path, MaskBlendCache)
    initial = np.full((1, 2, 6), 0.1, dtype=np.float32)
    state = program.make_state(initial={"cache": initial})
    assert state["cache"].dtype == np.float32
    assert np.array_equal(state["cache"], initial.astype(np.float16).astype(np.float32))  # not 0.1 itself
    new = np.array([[0.3, -2.0]], dtype=np.float16)
    out = program.run({"new": new, "pos": np.array([2], dtype=np.int32)}, state=state)["out0"]
    assert np.array_equal(state["cache"][0, :, 2], new[0].astype(np.float32))  # the write landed, in place
    want = np.full(6, 2 * np.float32(np.float16(0.1)))  # the sum over the state's two channels
    want[2] = np.float32(new[0].astype(np.float32).sum())
    assert np.allclose(out[0], want, rtol=1e-3)


def test_dropped_index_write_is_exposed(tmp_path):
    """coremltools converts ``buf[:, :, pos] = new`` without error but drops the write; executing the
    package shows it."""
    program, diffs, state = _run_stateful(tmp_path, IndexWriteCache)
    assert "coreml_update_state" not in program.function().op_types()  # the write is gone from the program
    assert min(diffs) > 0.05, "the interpreter must expose the dropped state write"
    assert not state["cache"].any()


def test_fp16_rounding_matches_numpy_cast():
    from zoo.core.mil.program import round_to_fp16

    rng = np.random.default_rng(4)
    values = np.concatenate(
        [
            rng.standard_normal(20000) * 100,
            rng.standard_normal(20000) * 1e-5,  # fp16 subnormals
            rng.standard_normal(20000) * 7e4,  # overflow to inf
            [0.0, -0.0, 65504, 65519.99, 65520, -65520, 2.0**-24, 2.0**-25, 1e-8, np.inf, -np.inf, np.nan],
            # fp16 subnormal ties (k + 1/2) x 2**-24 round to the even k, both signs; around 2**-14
            np.outer([1, -1], (np.arange(1024) + 0.5) * 2.0**-24).ravel(),
            [2.0**-14 * (1 - 2.0**-12), 2.0**-14 * (1 - 2.0**-11), 2.0**-14 * (1 + 2.0**-11)],
            # every float32 exponent, mantissas at random and at the edges (all-ones, one bit)
            np.concatenate(
                [
                    rng.integers(0, 2**32, 50000, dtype=np.uint64),
                    np.arange(256, dtype=np.uint64) << 23 | 0x7FFFFF,
                    np.arange(256, dtype=np.uint64) << 23 | 0x1000,
                ]
            )
            .astype(np.uint32)
            .view(np.float32),
        ]
    ).astype(np.float32)
    with np.errstate(all="ignore"):
        want = values.astype(np.float16).astype(np.float32)
    got = round_to_fp16(values)
    assert got.dtype == np.float32
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))

    from zoo.core.mil import program

    # any layout and dtype the kernels return: a strided view, float64, a 0-d value, each rounded into
    # a new array that leaves its input as it was
    block = values[:60000].reshape(-1, 4)
    before = block.copy()
    for case, expect in (
        (block, want[:60000].reshape(-1, 4)),
        (block.T, want[:60000].reshape(-1, 4).T),
        (block.astype(np.float64), want[:60000].reshape(-1, 4)),
        (np.float32(1 + 2.0**-11), np.float32(1)),
    ):
        got = round_to_fp16(case)
        assert got.shape == np.shape(case) and got.dtype == np.float32
        assert np.array_equal(got, expect, equal_nan=True)
    assert np.array_equal(block, before, equal_nan=True)
    # whether every rounded value is finite comes with the rounding (the interpreter's overflow report):
    # 65519.99 rounds to 65504, 65520 to inf, NaN stays NaN
    finite = values[np.isfinite(want)]
    for case in (finite, values, np.append(finite, np.float32(65519.99)), np.append(finite, np.float32(65520))):
        got, flag = program.rounded_and_finite(case)
        assert flag == bool(np.isfinite(got).all()) and np.array_equal(got, round_to_fp16(case), equal_nan=True)
    assert not program.rounded_and_finite(np.append(finite, np.float32(65520)))[1]
    assert program.rounded_and_finite(np.append(finite, np.float32(65519.99)))[1]
    assert not program.rounded_and_finite(np.append(finite, np.float32(np.nan)))[1]
    assert not program.rounded_and_finite(np.append(finite, np.float32(-np.inf)))[1]
    # (all 2**32 float32 bit patterns were compared once, in 8 minutes: no difference, NaN compared as NaN)


def test_rounding_and_gelu_split_between_threads_give_the_same_bits(monkeypatch):
    """Large arrays are rounded (and GELU'd) in ranges on several threads: each value by itself, so
    the same bits as one pass, and an overflow in any range is reported."""
    from zoo.core.mil import compiled, threads
    from zoo.core.mil.program import rounded_and_finite

    rng = np.random.default_rng(8)
    values = (rng.standard_normal(10_001) * 100).astype(np.float32)
    single_rounded, single_finite = rounded_and_finite(values)
    single_gelu = compiled.gelu_exact(values)
    single_tanh = compiled.gelu_tanh(values)
    assert single_finite
    monkeypatch.setattr(compiled, "SPLIT_ROUNDING", 1000)
    monkeypatch.setattr(compiled, "SPLIT_GELU", 1000)
    calls = []
    real = threads.run_split
    monkeypatch.setattr(threads, "run_split", lambda bounds, work: calls.append(bounds) or real(bounds, work))
    for count in (2, 3):
        monkeypatch.setattr(threads, "count", lambda n=count: n)
        rounded, finite = rounded_and_finite(values)
        assert finite and np.array_equal(rounded, single_rounded)
        assert np.array_equal(compiled.gelu_exact(values), single_gelu)
        assert np.array_equal(compiled.gelu_tanh(values), single_tanh)
        late = values.copy()
        late[-1] = 7e4  # rounds to inf, in the last range
        assert not rounded_and_finite(late)[1]
    assert calls and all(len(b) in (3, 4) for b in calls)  # the work was split


def test_gelu_tanh_compiled_gives_the_numpy_formula_bits():
    """The tanh approximation's compiled passes give numpy's float32 formula (the cube as x·x·x, as
    torch computes it) bit for bit: large, tiny, signed zeros, infinities and NaN included; and
    numpy's powf cube (what the kernel computed before) within what an ulp of the cube can move it."""
    from zoo.core.mil.kernels.elementwise import gelu

    rng = np.random.default_rng(11)
    x = np.concatenate(
        [
            (rng.standard_normal(50_000) * rng.choice([1e-6, 1e-2, 1.0, 5.0, 1e3], 50_000)).astype(np.float32),
            np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3e38, -3e38, 1e-45], np.float32),
        ]
    ).reshape(2, -1)
    c, k = np.float32(np.sqrt(2.0 / np.pi)), np.float32(0.044715)
    want = 0.5 * x * (1.0 + np.tanh(c * (x + k * (x * x * x))))
    got = gelu(x, mode="TANH_APPROXIMATION")
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.array_equal(got, want, equal_nan=True)
    # the two cubes differ by an ulp of the cube at most, which moves tanh by an ulp of 1: 2**-23 of
    # 1 + tanh, so |x| * 2**-23 of the result (for x near -5 that is all of it: 1 + tanh cancels)
    finite = np.isfinite(x) & (np.abs(x) < 1e4)
    with np.errstate(over="ignore", invalid="ignore"):
        powf = 0.5 * x * (1.0 + np.tanh(c * (x + k * x**3)))
    assert np.all(np.abs(got - powf)[finite] <= np.abs(x[finite]) * 2.0**-22)


def test_fp16_widening_matches_numpy_cast():
    """fp16 constants and inputs are held as float32 through a look-up of their bits: every one of
    the 65,536 patterns (subnormals, both zeros, inf, NaN payloads) as numpy's cast gives it, in any
    layout and shape."""
    from zoo.core.mil.compiled import widen_fp16

    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    want = every.astype(np.float32)
    got = widen_fp16(every)
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))
    block = every.reshape(256, 256)
    for case in (block, block.T, block[::3, 1::2], np.float16(-(2.0**-24)), np.float16(np.nan)):
        got = widen_fp16(np.asarray(case))
        assert got.shape == np.shape(case)
        assert np.array_equal(got.view(np.uint32), np.asarray(case).astype(np.float32).view(np.uint32))


def test_lstm_reverse_clip_and_activations_follow_coremltools_reference():
    """The lstm kernel as coremltools' reference for the op defines it (ops/tests/iOS14/
    test_recurrent.py): ``reverse`` emits its outputs in the order it ran, ``clip`` bounds the cell
    state (not the gates), and every named activation is known. Each checked against the same
    step written out here in float64."""
    from zoo.core.mil.kernels.recurrent import lstm

    rng = np.random.default_rng(3)
    steps, hidden, width = 6, 4, 3
    x = rng.standard_normal((steps, 1, width)).astype(np.float32)
    w_ih = rng.standard_normal((4 * hidden, width)).astype(np.float32)
    w_hh = rng.standard_normal((4 * hidden, hidden)).astype(np.float32)
    zeros = np.zeros((1, hidden), np.float32)
    acts = {"hard_sigmoid": lambda v: np.clip(0.2 * v + 0.5, 0, 1), "linear": lambda v: v, "sigmoid": None}

    def reference(xs, clip=None, rec="sigmoid"):
        act = acts[rec] or (lambda v: 1 / (1 + np.exp(-v)))
        h, c, outs = np.zeros((1, hidden)), np.zeros((1, hidden)), []
        for t in range(len(xs)):
            z = xs[t] @ w_ih.T.astype(np.float64) + h @ w_hh.T.astype(np.float64)
            i, f, o, g = np.split(z, 4, axis=-1)
            c = act(f) * c + act(i) * np.tanh(g)
            c = c if clip is None else np.clip(c, -clip, clip)
            h = act(o) * np.tanh(c)
            outs.append(h)
        return np.stack(outs)

    def ours(**kwargs):
        return lstm(x, zeros, zeros, w_ih, w_hh, output_sequence=True, **kwargs)[0]

    assert np.abs(ours(direction="reverse") - reference(x[::-1])).max() < 1e-5  # run order, not input order
    assert np.abs(ours(clip=0.05) - reference(x, clip=0.05)).max() < 1e-5
    assert np.abs(ours(clip=0.05)).max() < 0.05  # |h| = |o·tanh(c)| < |c| <= clip
    for name in ("hard_sigmoid", "linear"):
        assert np.abs(ours(recurrent_activation=name) - reference(x, rec=name)).max() < 1e-4 * (
            1 + np.abs(reference(x, rec=name)).max()
        )


class LayersAroundACache(nn.Module):
    """Linear layers before and after an fp16 state read and added to in the middle of the call."""

    def __init__(self):
        super().__init__()
        self.before = nn.ModuleList(nn.Linear(2, 2) for _ in range(3))
        self.after = nn.ModuleList(nn.Linear(6, 6) for _ in range(3))
        self.register_buffer("cache", torch.zeros(1, 2, 6, dtype=torch.float16))

    def forward(self, new, pos):
        new = new.float()
        for layer in self.before:
            new = torch.tanh(layer(new))
        slots = torch.arange(6, dtype=torch.int32).reshape(1, 1, 6)
        mask = (slots == pos.reshape(1, 1, 1)).to(torch.float16)
        self.cache.add_(new.half().reshape(1, 2, 1) * mask)  # accumulates: a run depends on the state before it
        out = self.cache.sum(dim=1).float()
        for layer in self.after:
            out = torch.tanh(layer(out))
        return out


@pytest.mark.parametrize("share", ["all", "half", "none"])
def test_a_replay_from_a_recorded_step_equals_a_whole_run(tmp_path, share):
    """What the mixed planner relies on: after substituting a weight, re-running a recorded call
    from the first step reading it gives the whole run's outputs bit for bit (states included:
    the replay starts from the state as it was, not as the recorded run left it), whatever
    the snapshots' budget keeps."""
    # its own weights and inputs, not the module's running generators': with some draws, tanh in
    # fp16 saturates (exactly 1 from |x| > 4.2) and a weight before it changes nothing
    torch.manual_seed(7)
    rng = np.random.default_rng(7)

    def rand(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    program = convert(
        tmp_path,
        LayersAroundACache(),
        {"new": rand(1, 2).astype(np.float16), "pos": np.array([2], dtype=np.int32)},
        precision="fp16",
        target="iOS18",
        states=[StateSpec("cache", (1, 2, 6), "float16")],
        dtypes={"new": "float16"},
    )
    inputs = {"new": rand(1, 2).astype(np.float16), "pos": np.array([2], dtype=np.int32)}
    initial = {"cache": rand(1, 2, 6).astype(np.float16)}
    weights = [name for name in program.function().const_reads if "weight" in name]
    points = {program.first_read([w], "main") for w in weights}
    whole = program.record(inputs, "main", initial, points, 1 << 30).bytes
    budget = {"all": whole, "half": whole // 2, "none": 0}[share]
    recording = program.record(inputs, "main", initial, points, budget)
    assert all(np.array_equal(recording.outputs[k], v) for k, v in program.run_fresh(inputs, "main", initial).items())
    kept, wanted = set(recording.snapshots) - {0}, points - {0}
    assert recording.bytes <= budget
    # every point where no live value is a state buffer's view; a few of them; none
    assert {"all": kept == wanted, "half": 0 < len(kept) < len(wanted), "none": not kept}[share], (kept, wanted)
    for weight in weights:
        exact = program.constant(weight, "main")
        previous = program.substitute(weight, exact * 1.5)
        want = program.run_fresh(inputs, "main", initial)
        for _ in range(2):  # a replay leaves the recording as it was
            got = program.replay(recording, program.first_read([weight], "main"))
            assert all(np.array_equal(got[k], v) for k, v in want.items()), weight
        assert not np.array_equal(want["out0"], recording.outputs["out0"])  # the substitution did something
        program.substitute(weight, previous)


def test_a_pipeline_under_validated_once_makes_the_same_program_and_still_refuses_a_broken_one():
    """zoo's conversions validate a pass pipeline's program at its end instead of after each pass
    (core/coreml/tools.validated_once): the same program comes out, with fewer checks, and a pass
    that breaks the program is still refused."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import Function
    from coremltools.converters.mil.mil.passes.graph_pass import AbstractGraphPass
    from coremltools.converters.mil.mil.passes.pass_pipeline import PassPipeline, PassPipelineManager
    from coremltools.converters.mil.mil.passes.pass_registry import register_pass

    from zoo.core.coreml.tools import validated_once

    def program():
        @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))])
        def prog(x):
            for _ in range(4):
                x = mb.relu(x=mb.add(x=x, y=np.float32(1.0)))
            return mb.mul(x=x, y=np.float32(1.0))  # removed by the default pipeline

        return prog

    @register_pass(namespace="zoo_test", override=True)
    class break_last_op(AbstractGraphPass):  # noqa: N801 (coremltools names passes so)
        def apply(self, prog):  # a var claims a reader that does not read it: only validation sees it
            ops = prog.functions["main"].operations
            ops[0].outputs[0].add_child_op(ops[-1])

    checks = []
    validate = Function.validate

    def counted(self, *args, **kwargs):
        checks.append(self)
        return validate(self, *args, **kwargs)

    made, counts = {}, {}
    for once in (False, True):
        checks.clear()
        prog = program()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Function, "validate", counted)
            if once:
                with validated_once():
                    PassPipelineManager.apply_pipeline(prog, PassPipeline.DEFAULT)
            else:
                PassPipelineManager.apply_pipeline(prog, PassPipeline.DEFAULT)
        made[once] = [
            (op.op_type, sorted(op.inputs), [str(o.sym_type) for o in op.outputs])
            for op in prog.functions["main"].operations
        ]
        counts[once] = len(checks)
        broken = PassPipeline(["common::dead_code_elimination", "zoo_test::break_last_op"], "broken")
        with pytest.raises(Exception, match="should be consumed by op"):
            if once:
                with validated_once():
                    PassPipelineManager.apply_pipeline(program(), broken)
            else:
                PassPipelineManager.apply_pipeline(program(), broken)
    assert made[True] == made[False] and "mul" not in {op for op, _, _ in made[True]}
    assert counts[True] < counts[False] - len(PassPipeline.DEFAULT.passes) / 2, counts


def test_the_sliced_fp16_overflow_check_answers_as_coremltools_does_without_its_index_arrays():
    """core/coreml/tools.lean_overflow_check: coremltools' FP16ComputePrecision.fp16_overflow on
    const inputs, read in slices; the same verdict for every kind of constant, and the check of a
    large constant allocates a slice's worth, not index arrays the size of the constant."""
    import tracemalloc

    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil.passes.defs.quantization import FP16ComputePrecision

    from zoo.core.coreml import tools

    rng = np.random.default_rng(0)
    big = rng.standard_normal((600, 4096)).astype(np.float32)  # 2.4 M elements: three slices
    cases = {
        "small": big,
        "over in the last slice": np.concatenate([big.ravel(), [70000.0]]).astype(np.float32).reshape(-1, 1),
        "just fp16's largest": np.array([65504.0, -65504.0], np.float32),
        "just over, negative": np.array([1.0, -65505.0], np.float32),
        "infinities and masks only": np.array([np.inf, -np.inf, -1e38, 3.0e38, 1.0], np.float32),
        "NaN beside small": np.array([np.nan, 2.0], np.float32),
        "NaN beside large": np.array([np.nan, 1e6], np.float32),
        "scalar over": np.float32(1e5),
        "empty": np.zeros((0, 4), np.float32),
    }
    for name, value in cases.items():

        @mb.program(input_specs=[mb.TensorSpec(shape=(1,))])
        def prog(x):
            return mb.add(x=x, y=mb.const(val=value))

        add = next(op for op in prog.functions["main"].operations if op.op_type == "add")
        want = FP16ComputePrecision.fp16_overflow(add)
        with tools.lean_overflow_check():
            tracemalloc.start()
            got = FP16ComputePrecision.fp16_overflow(add)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert got == want, name
        assert peak <= 2 * tools.OVERFLOW_SLICE * 4 + 65536, (name, peak)  # coremltools': 24 bytes per element
    assert [tools.overflows_fp16(v) for v in cases.values()] == [
        False, True, False, True, False, False, True, True, False
    ]  # fmt: skip


def test_quick_immediate_values_write_coremltools_bytes_without_its_per_element_path():
    """Under core/coreml/tools.quick_immediate_values a constant kept in the program (a bool mask,
    an int or float table) is written in one append; the Value, and a converted program holding
    one, are coremltools' own byte for byte, and its per-element conversion is not used."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.backend.mil import helper
    from coremltools.converters.mil.converter import mil_convert
    from coremltools.converters.mil.mil.types import type_mapping

    from zoo.core.coreml.tools import QUICK_DTYPES, import_coremltools, quick_immediate_values

    ct = import_coremltools()

    rng = np.random.default_rng(0)
    arrays = [
        rng.random((3, 40, 50)) > 0.5,
        rng.integers(-(2**31), 2**31 - 1, (7, 300), dtype=np.int32),
        rng.integers(-(2**62), 2**62, (5, 20), dtype=np.int64),
        rng.standard_normal((64, 3)).astype(np.float32),
        rng.standard_normal(100),  # float64
        rng.standard_normal((4, 4)).astype(np.float32),  # under the size: coremltools' path
        rng.standard_normal((8, 40)).astype(np.float16),  # bytes: coremltools' path
        np.arange(200, dtype=np.uint16),  # widened to int32 by coremltools: its path
    ]
    assert {a.dtype.name for a in arrays} >= set(QUICK_DTYPES)
    calls = []
    per_element = type_mapping.np_val_to_py_type

    def counted(val):
        calls.append(1)
        return per_element(val)

    for a in arrays:
        want = helper.create_tensor_value(a).SerializeToString()  # outside the block: coremltools' path
        with pytest.MonkeyPatch.context() as patch, quick_immediate_values():
            patch.setattr(type_mapping, "np_val_to_py_type", counted)
            calls.clear()
            got = helper.create_tensor_value(a).SerializeToString()
        assert got == want, a.dtype
        assert (len(calls) == 0) == (a.dtype.name in QUICK_DTYPES and a.size >= 64), a.dtype

    mask = rng.random((1, 1, 60, 60)) > 0.3

    def spec_bytes(quick):
        @mb.program(input_specs=[mb.TensorSpec(shape=(1, 1, 60, 60))])
        def prog(x):
            return mb.select(cond=mask, a=x, b=np.float32(-1e4))

        calls.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(type_mapping, "np_val_to_py_type", counted)
            with quick_immediate_values() if quick else contextlib.nullcontext():
                model = mil_convert(
                    prog,
                    convert_to="mlprogram",
                    convert_from="milinternal",
                    specification_version=8,
                    compute_units=ct.ComputeUnit.CPU_ONLY,
                )
        return model.get_spec().SerializeToString(), len(calls)

    (quick, quick_calls), (plain, plain_calls) = spec_bytes(True), spec_bytes(False)
    assert quick == plain
    assert plain_calls >= mask.size > quick_calls  # the mask went in whole, one element at a time without


def test_pass_options_keep_a_mask_computed_that_coremltools_would_store(tmp_path):
    """A Traceable's ``pass_options`` reach coremltools' pipeline (core/host/defaults): with
    const_elimination told to skip results of n² elements, a causal band mask built from the step
    numbers is computed in the package instead of stored as n² bools (pocket_tts's voice encoder:
    4 MB), and the package still computes what torch does."""

    class Banded(nn.Module):
        def __init__(self, n: int, context: int):
            super().__init__()
            self.n, self.context = n, context
            self.register_buffer("step_numbers", torch.arange(n, dtype=torch.int32), persistent=False)

        def forward(self, q):
            delta = self.step_numbers.view(-1, 1) - self.step_numbers.view(1, -1)
            mask = ((delta >= 0) & (delta < self.context)).view(1, 1, self.n, self.n)
            return F.scaled_dot_product_attention(q, q, q, mask)

    n = 48
    inputs = {"q": rand(1, 2, n, 8)}
    largest = {}
    for kept in (False, True):
        options = {"pass_options": {"common::const_elimination": {"skip_const_by_size": n * n - 1}}} if kept else {}
        traceable = Traceable(
            Banded(n, 5).eval(), [TensorSpec("q", (1, 2, n, 8))], ["out0"], [inputs], convert_options=options
        )
        path = tmp_path / f"banded-{kept}.mlpackage"
        save_component({"main": traceable}, Variant("v", precision="fp32", target="iOS18"), path)
        program = MilProgram.load(path)
        largest[kept] = max(
            np.asarray(payload).size
            for step in program.function().steps
            for _, kind, payload in step.args
            if kind == "const"
        )
        got = program.run(inputs)
        assert rel_err(next(iter(got.values())), torch_out(traceable.module, inputs)[0]) < 1e-5
    assert largest[False] == n * n and largest[True] < n * n, largest  # stored, then computed


def _attention_formula(q, k, v, mask):
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) / np.float32(np.sqrt(q.shape[-1]))
    if mask is not None:
        scores = np.where(mask, scores, -np.inf) if mask.dtype == np.bool_ else scores + mask
    e = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    return np.matmul(e / np.sum(e, axis=-1, keepdims=True), v)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mask", ["none", "bool", "bool wider", "float", "float64", "float wider"])
def test_attention_softmax_and_gelu_computed_in_place_equal_their_formulas_bit_for_bit(dtype, mask):
    """The kernels that reuse their arrays (attention's scores scaled, masked and normalised in
    place; softmax; exact GELU in two arrays) give the bits of the plain formulas, for every mask
    kind, masks that widen the result, and fp16 inputs."""
    from zoo.core.mil import KERNELS

    rng = np.random.default_rng(7)
    q, k, v = (rng.normal(size=(1, 2, 5, 8)).astype(dtype) for _ in range(3))
    m = {
        "none": None,
        "bool": np.tril(np.ones((5, 5), bool)),
        "bool wider": rng.random((3, 1, 5, 5)) > 0.3,
        "float": rng.normal(size=(1, 1, 5, 5)).astype(np.float32),
        "float64": rng.normal(size=(5, 5)),
        "float wider": rng.normal(size=(3, 2, 5, 5)).astype(np.float32),
    }[mask]
    got = KERNELS["scaled_dot_product_attention"](query=q, key=k, value=v, attn_mask=m)
    want = _attention_formula(q, k, v, m)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    x = (rng.normal(size=(3, 7)) * 4).astype(dtype)
    e = np.exp(x - np.max(x, axis=0, keepdims=True))
    np.testing.assert_array_equal(KERNELS["softmax"](x=x, axis=0), e / np.sum(e, axis=0, keepdims=True))
    from scipy.special import erf

    gelu = KERNELS["gelu"](x=x, mode="EXACT")
    want_gelu = 0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))
    assert gelu.dtype == want_gelu.dtype
    np.testing.assert_array_equal(gelu, want_gelu)
    # float32 (every value the interpreter holds) goes through the compiled loop: the same bits over
    # a wide range, in a strided layout too, with signed zeros, infinities and NaN
    wide = np.concatenate(
        [
            rng.normal(size=20000) * 4,
            rng.normal(size=2000) * 1e-4,
            np.linspace(-12, 12, 4001),
            [0.0, -0.0, np.inf, -np.inf, np.nan],
        ]
    ).astype(np.float32)
    with np.errstate(invalid="ignore"):
        want_wide = 0.5 * wide * (1.0 + erf(wide / np.float32(np.sqrt(2.0))))
        for case, want_case in ((wide, want_wide), (wide[::3], want_wide[::3])):
            got = KERNELS["gelu"](x=case, mode="EXACT")
            assert got.dtype == np.float32 and got.shape == case.shape
            np.testing.assert_array_equal(got, want_case)


def test_fp16_finiteness_from_the_bits_matches_numpy():
    """``compiled.finite_fp16`` (a decompressed weight held as fp16 is checked by its bits): every
    fp16 bit pattern alone, and arrays with one inf or NaN anywhere."""
    from zoo.core.mil import compiled

    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    for value in every[:: 1 << 6].tolist() + [np.float16(65504), np.float16(-np.inf), np.float16(np.nan)]:
        one = np.array([value], np.float16)
        assert compiled.finite_fp16(one) == bool(np.isfinite(one).all()), value
    rng = np.random.default_rng(4)
    base = rng.standard_normal((7, 33)).astype(np.float16)
    assert compiled.finite_fp16(base)
    for bad in (np.inf, -np.inf, np.nan):
        for at in ((0, 0), (6, 32), (3, 17)):
            spoiled = base.copy()
            spoiled[at] = bad
            assert not compiled.finite_fp16(spoiled) and not compiled.finite_fp16(spoiled.T), (bad, at)
