"""zoo's package reader (``zoo.core.mil.reader``) against coremltools' own loader (``milproto.load``).

The interpreter used to compile the program coremltools' loader builds; it now compiles what zoo's
reader reads, without importing coremltools. Both are run here on the same saved packages and
must agree op by op: types, names, which variable each parameter reads, every constant's value
(dtype, shape, bits) and each output's dtype. The packages cover what zoo's exports hold: fp16
weights in the weight file, values written in the spec (scalars, strings, bools, int32 tensors),
palette indices packed below a byte (1, 2, 3, 4, 6 bits, unsigned, and int4 data), iOS16
decompression ops, states, several functions sharing a weight, and a tuple parameter given one value.
A package the reader must refuse (tampered with on disk) gives a MilError saying where, never
a crash or a wrong value.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import save_builder_program
from torch import nn

from zoo.core.host.defaults import save_component
from zoo.core.mil import MilError, MilProgram
from zoo.core.mil.reader import read_program
from zoo.core.plugin.spec import Variant
from zoo.core.plugin.traceable import StateSpec, TensorSpec, Traceable

RNG = np.random.default_rng(7)
WEIGHTS = ("Data", "com.apple.CoreML", "weights")


def _save_builder(path, fn, inputs, target, precision="fp16"):
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    specs = [mb.placeholder(shape=shape, dtype=types.fp32) for shape in inputs]
    return save_builder_program(path, fn, specs, target, precision)


def _ios18_program(path):
    """Weights decompressed from int8 / int4 data and from 1-, 2-, 3-, 4- and 6-bit palettes, a conv
    (string and int parameters), a reduction (a bool), a one-value concat, an fp16 weight stored in
    the file."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    def indices(bits, shape):
        dtype = getattr(types, f"np_uint{bits}_dtype", np.uint8) if bits < 8 else np.uint8
        return RNG.integers(0, 1 << bits, size=shape).astype(dtype)

    weights = {}
    for bits in (1, 2, 3, 4, 6):
        weights[bits] = (indices(bits, (8, 5)), RNG.standard_normal((1, 1, 1 << bits, 1)).astype(np.float32))
    int8 = RNG.integers(-128, 128, size=(8, 5)).astype(np.int8)
    int4 = RNG.integers(-8, 8, size=(8, 5)).astype(getattr(types, "np_int4_dtype", np.int8))
    scale = RNG.random((2, 1)).astype(np.float32) + 0.5
    big = RNG.standard_normal((64, 40)).astype(np.float32)  # 10 KB in fp16: in the weight file

    def fn(x):
        total = mb.linear(x=x, weight=big)
        for bits, (idx, lut) in weights.items():
            total = mb.add(x=total, y=mb.reduce_sum(x=mb.constexpr_lut_to_dense(indices=idx, lut=lut), keep_dims=False))
        for data in (int8, int4):
            dense = mb.constexpr_blockwise_shift_scale(data=data, scale=scale)
            total = mb.add(x=total, y=mb.reduce_mean(x=dense, axes=[0, 1], keep_dims=True))
        conv = mb.conv(
            x=mb.expand_dims(x=total, axes=[0]),
            weight=RNG.standard_normal((3, 1, 3)).astype(np.float32),
            pad_type="same",
        )
        return mb.concat(values=[conv], axis=-1)

    return _save_builder(path, fn, [(1, 40)], "iOS18")


def _ios16_program(path):
    from coremltools.converters.mil import Builder as mb

    q = RNG.integers(0, 256, size=(4, 6)).astype(np.uint8)
    zp = RNG.integers(0, 256, size=4).astype(np.uint8)
    scale = RNG.random(4).astype(np.float32)

    def fn(x):
        dense = mb.constexpr_affine_dequantize(quantized_data=q, zero_point=zp, scale=scale, axis=0)
        return mb.matmul(x=x, y=dense)

    return _save_builder(path, fn, [(2, 4)], "iOS16", precision="fp32")


class _Cache(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("cache", torch.zeros(1, 2, 6, dtype=torch.float16))
        self.proj = nn.Linear(2, 2)

    def forward(self, new, pos):
        """Two updates whose results are read (the first by the second, the second by the sum), then
        one whose result nothing reads."""
        mask = (torch.arange(6) == pos).to(torch.float16).view(1, 1, 6)
        self.cache.mul_(1 - mask).add_(self.proj(new.float()).half().view(1, 2, 1) * mask)
        total = self.cache.sum(dim=1)
        self.cache.mul_(0.5)
        return total


def _stateful_and_shared(path):
    """Two functions sharing a linear's weight; one of them stateful (iOS18, fp16)."""
    lin = nn.Linear(64, 64)
    a = Traceable(
        _Cache().eval(),
        [TensorSpec("new", (1, 2), "float16"), TensorSpec("pos", (1,), "int32")],
        ["out0"],
        [{"new": RNG.standard_normal((1, 2)).astype(np.float16), "pos": np.array([1], np.int32)}],
        states=[StateSpec("cache", (1, 2, 6), "float16")],
    )
    b = Traceable(
        lin.eval(), [TensorSpec("x", (3, 64))], ["y"], [{"x": RNG.standard_normal((3, 64)).astype(np.float32)}]
    )
    c = Traceable(
        nn.Sequential(lin, nn.ReLU()).eval(),
        [TensorSpec("x", (1, 64))],
        ["y"],
        [{"x": RNG.standard_normal((1, 64)).astype(np.float32)}],
    )
    save_component({"step": a, "second": b, "third": c}, Variant("v", precision="fp16", target="iOS18"), path)
    return path


PACKAGES = {
    "iOS18 compressed": _ios18_program,
    "iOS16 constexpr": _ios16_program,
    "states, shared": _stateful_and_shared,
}


def _same_value(ours, theirs) -> str:
    """ "" when equal in type, dtype, shape and every value (NaN equal to NaN), else what differs."""
    if isinstance(theirs, np.ndarray):
        if not isinstance(ours, np.ndarray) or ours.dtype != theirs.dtype or ours.shape != theirs.shape:
            return (
                f"{type(ours).__name__} {getattr(ours, 'dtype', '')} {np.shape(ours)} vs {theirs.dtype} {theirs.shape}"
            )
        equal = np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f")
        return "" if equal else "values differ"
    if type(ours) is not type(theirs):
        return f"{type(ours).__name__} vs {type(theirs).__name__}"
    return "" if ours == theirs or (ours != ours and theirs != theirs) else f"{ours!r} vs {theirs!r}"


def _compare(path) -> list[str]:
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto
    from coremltools.converters.mil.mil import types

    from zoo.core.coreml.tools import import_coremltools, load_package_spec

    import_coremltools()
    spec = load_package_spec(path)
    theirs = load_milproto(spec, spec.specificationVersion, file_weights_dir=str(path.joinpath(*WEIGHTS)))
    ours = read_program(path)
    problems = []
    assert set(ours.functions) == set(theirs.functions)
    for name, fn in theirs.functions.items():
        mine = ours.functions[name]
        their_ops = [op for op in fn.operations if op.op_type != "const"]
        if [(o.type, o.name) for o in mine.ops] != [(o.op_type, o.name) for o in their_ops]:
            problems.append(
                f"{name}: ops {[(o.type, o.name) for o in mine.ops]} vs {[(o.op_type, o.name) for o in their_ops]}"
            )
            continue
        assert [v.name for v in mine.inputs] == list(fn.inputs)
        assert mine.outputs == [v.name for v in fn.outputs]
        for op, their in zip(mine.ops, their_ops):
            where = f"{name}: {op.type} {op.name!r}"
            if set(op.inputs) != set(their.inputs):
                problems.append(f"{where}: parameters {sorted(op.inputs)} vs {sorted(their.inputs)}")
                continue
            for param, value in their.inputs.items():
                read = op.inputs[param]
                if isinstance(value, (list, tuple)) != isinstance(read, list):
                    problems.append(
                        f"{where}.{param}: list {isinstance(read, list)} vs {isinstance(value, (list, tuple))}"
                    )
                    continue
                for r, v in zip(
                    read if isinstance(read, list) else [read], value if isinstance(value, (list, tuple)) else [value]
                ):
                    if v.op is not None and v.op.op_type == "const":
                        if r not in mine.consts:
                            problems.append(f"{where}.{param}: a variable {r!r}, coremltools reads a constant")
                            continue
                        const = mine.consts[r]
                        if "::" not in const.op_name and const.op_name != v.op.name:
                            problems.append(f"{where}.{param}: constant {const.op_name!r} vs {v.op.name!r}")
                        differs = _same_value(const.load(), v.val)
                        if differs:
                            problems.append(f"{where}.{param}: {differs}")
                    elif r != v.name:
                        problems.append(f"{where}.{param}: reads {r!r} vs {v.name!r}")
            for out, their_out in zip(op.outputs, their.outputs):
                want = np.dtype(types.nptype_from_builtin(their_out.dtype))
                if out.name != their_out.name or np.dtype(out.dtype) != want:
                    problems.append(f"{where}: output {out.name} {out.dtype} vs {their_out.name} {want}")
    return problems


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    return {name: make(root / f"{i}.mlpackage") for i, (name, make) in enumerate(PACKAGES.items())}


@pytest.mark.parametrize("name", PACKAGES)
def test_reader_reads_what_coremltools_loads(packages, name):
    assert _compare(packages[name]) == []


def test_state_writes_read_back_as_updates_and_run(packages):
    spec = read_program(packages["states, shared"])
    ops = spec.functions["step"].ops
    updates = [len(op.outputs) for op in ops if op.type == "coreml_update_state"]
    assert updates == [1, 1, 0] and not any(op.type in ("write_state",) for op in ops)
    program = MilProgram.load(packages["states, shared"])
    state = program.make_state("step")
    new = np.array([[0.5, -1.0]], np.float16)
    for pos in range(3):
        program.run({"new": new, "pos": np.array([pos], np.int32)}, "step", state)
    # three writes of the projection, each halved by the write nothing reads: the last one once
    assert np.count_nonzero(state["cache"][0, 0]) == 3
    assert abs(state["cache"][0, 0, 0]) * 3 < abs(state["cache"][0, 0, 2]) * 2  # halved twice vs once


def test_loading_a_package_imports_neither_coremltools_nor_torch(packages):
    code = (
        "import sys; from zoo.core.mil import load; "
        f"p = load({str(packages['iOS18 compressed'])!r}); "
        "print(sorted(m for m in ('coremltools', 'torch', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _weight_file(package):
    return package.joinpath(*WEIGHTS, "weight.bin")


def _first_blob(package):
    """The offset of the first blob the program reads (its metadata's position in the file)."""
    spec = read_program(package)
    return min(c.blob[1] for f in spec.functions.values() for c in f.consts.values() if c.blob is not None)


def test_tampered_weight_files_are_refused_saying_where(packages, tmp_path):
    src = packages["iOS18 compressed"]
    offset = _first_blob(src)
    cases = {
        "sentinel": lambda b: b[:offset] + b"\0\0\0\0" + b[offset + 4 :],
        "past the file's end": lambda b: b[: offset + 16] + (10**9).to_bytes(8, "little") + b[offset + 24 :],
        "bytes for shape": lambda b: b[: offset + 8] + (2).to_bytes(8, "little") + b[offset + 16 :],
        "data type code": lambda b: b[: offset + 4] + (5).to_bytes(4, "little") + b[offset + 8 :],
        "no blob metadata": lambda b: b[:offset],
    }
    for i, (message, tamper) in enumerate(cases.items()):
        package = _copy(src, tmp_path / f"t{i}.mlpackage")
        path = _weight_file(package)
        path.write_bytes(tamper(path.read_bytes()))
        with pytest.raises(MilError, match=message):
            MilProgram.load(package)


def _point_blobs_at(package, file_name: str) -> None:
    """Rewrite every weight-file reference in ``package``'s spec to ``file_name``."""
    from zoo.core.coreml.tools import load_package_spec, root_model_path

    spec = load_package_spec(package)

    def values(block):
        for op in block.operations:
            yield from op.attributes.values()
            for argument in op.inputs.values():
                yield from (b.value for b in argument.arguments if b.WhichOneof("binding") == "value")

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for value in values(block):
                if value.WhichOneof("value") == "blobFileValue":
                    value.blobFileValue.fileName = file_name
    root_model_path(package).write_bytes(spec.SerializeToString())


def test_a_weight_file_outside_the_package_is_never_read(packages, tmp_path):
    """A spec naming ``../../weight.bin`` reads the weights directory's own file of that name (here
    removed: refused), and a weight file that is a link out of the package is refused too."""
    package = _copy(packages["iOS18 compressed"], tmp_path / "escape.mlpackage")
    outside = tmp_path / "weight.bin"
    outside.write_bytes(_weight_file(package).read_bytes())
    _point_blobs_at(package, "@model_path/weights/../../../../weight.bin")
    _weight_file(package).unlink()
    with pytest.raises(MilError, match="weight file"):
        MilProgram.load(package)
    _weight_file(package).symlink_to(outside)
    with pytest.raises(MilError, match="weight file"):
        MilProgram.load(package)
    _weight_file(package).unlink()
    _weight_file(package).write_bytes(outside.read_bytes())
    assert MilProgram.load(package).function("main").steps  # the same file inside: read
    # the weights directory itself a link out of the package (to a directory holding weight.bin)
    weights = _weight_file(package).parent
    weights.rename(tmp_path / "weights")
    weights.symlink_to(tmp_path / "weights")
    with pytest.raises(MilError, match="weight file"):
        MilProgram.load(package)


def test_a_malformed_state_write_is_refused_saying_where(packages, tmp_path):
    from zoo.core.coreml.tools import load_package_spec, root_model_path

    package = _copy(packages["states, shared"], tmp_path / "write.mlpackage")
    spec = load_package_spec(package)
    block = spec.mlProgram.functions["step"].block_specializations["CoreML8"]
    write = next(op for op in block.operations if op.type == "write_state")
    del write.inputs["data"]
    root_model_path(package).write_bytes(spec.SerializeToString())
    with pytest.raises(MilError, match="write_state needs one input and one data"):
        MilProgram.load(package)


def test_a_spec_that_is_not_a_model_is_refused(packages, tmp_path):
    from zoo.core.coreml.tools import root_model_path

    package = _copy(packages["iOS16 constexpr"], tmp_path / "garbage.mlpackage")
    root_model_path(package).write_bytes(b"\xff" * 64)
    with pytest.raises(MilError, match="not a CoreML model specification"):
        MilProgram.load(package)
