"""Read a saved ML program (.mlpackage) into the plain description the interpreter compiles.

The package's ``Model`` protobuf (``coreml.proto``: coremltools' generated messages, without
importing coremltools) and its weight blob file are read directly: coremltools' own loader
(``milproto.load``) builds a Python MIL program, running every op's type inference, and needs
coremltools imported (with torch, scikit-learn, transformers). For `zoo run kokoro --backend mil`
those were 2.4 s and 2.6 s of a 12 s run (2026-12-05, cProfile and `-X importtime`).

What this reads is what coremltools' loader gives the interpreter, in the same form: a constant
is a numpy array (a rank-0 one a numpy scalar, a string a ``str``); sub-byte integers (palette
indices) are unpacked to one uint8 / int8 per element; a ``write_state`` directly followed by
the ``read_state`` of the same state is one ``coreml_update_state`` (as coremltools writes it; a
``write_state`` alone is one without an output);
an argument binding several values, or a parameter MIL declares as a tuple, is a list.
``tests/mil/test_mil_reader.py`` compares both loaders' results op by op.

Nothing read is trusted: a constant's declared shape must match the values given for it, a blob's
metadata must carry its sentinel, stay inside the weight file and hold at least the bytes the
shape claims (memory is bounded by the file's size), the weight file must lie in the package's
``weights`` directory, and every variable an op reads must have been defined before it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class ReadError(ValueError):
    """The package cannot be read as an ML program."""


#: MIL data type name (``MIL_pb2.DataType``) -> (numpy type, bits per element when packed below a byte)
_TYPES: dict[str, tuple[Any, int]] = {
    "BOOL": (np.bool_, 0),
    "STRING": (np.str_, 0),
    "FLOAT16": (np.float16, 0),
    "FLOAT32": (np.float32, 0),
    "FLOAT64": (np.float64, 0),
    "INT8": (np.int8, 0),
    "INT16": (np.int16, 0),
    "INT32": (np.int32, 0),
    "INT64": (np.int64, 0),
    "UINT8": (np.uint8, 0),
    "UINT16": (np.uint16, 0),
    "UINT32": (np.uint32, 0),
    "UINT64": (np.uint64, 0),
    "INT4": (np.int8, 4),
    "UINT1": (np.uint8, 1),
    "UINT2": (np.uint8, 2),
    "UINT3": (np.uint8, 3),
    "UINT4": (np.uint8, 4),
    "UINT6": (np.uint8, 6),
}
#: the blob storage's data type codes (MILBlob's ``BlobDataType``) for the types whose code is fixed
#: since its first version, by the numpy type they are read as; newer codes (sub-byte, 32-bit
#: integers) are checked by size only
_BLOB_CODES: dict[Any, int] = {np.float16: 1, np.float32: 2, np.uint8: 3, np.int8: 4, np.int16: 6, np.uint16: 7}
#: parameters MIL declares as tuples (coremltools' ``TupleInputType``): a list even with one value
TUPLE_PARAMS = {
    "concat": {"values"},
    "stack": {"values"},
    "einsum": {"values"},
    "reshape_like": {"ref_tensors", "begins", "ends", "end_masks"},
    "make_list": {"elem_shape"},
    "while_loop": {"loop_vars"},
}
_BLOB_HEADER = 64  # storage header: uint32 count, uint32 version (2), reserved
_BLOB_METADATA = struct.Struct("<IIQQ")  # sentinel, data type code, size in bytes, data offset
_SENTINEL = 0xDEADBEEF


@dataclass(frozen=True)
class VarSpec:
    name: str
    dtype: Any  # numpy type (fp16 as np.float16)
    #: None for a dimension unknown until run time; the whole shape None when even the rank is
    #: (a variadic dimension: coremltools writes some ops' outputs so, e.g. a ``fill`` of a shape
    #: computed at run time)
    shape: tuple[int | None, ...] | None
    state: bool = False  # a state (its dtype and shape are the wrapped tensor's)
    bits: int = 0  # sub-byte integers (palette indices): bits per element as stored, packed

    def named(self, name: str) -> "VarSpec":
        return VarSpec(name, self.dtype, self.shape, self.state, self.bits)


@dataclass
class ConstSpec:
    """A constant an op reads: the ``const`` op's name and variable, and where its value lies: in
    the spec (``value``) or in a weight file (``blob``: the file and offset, read by ``weights``)."""

    op_name: str
    var: VarSpec
    value: Any = None
    blob: tuple[Path, int] | None = None
    weights: "_Weights | None" = None

    def load(self) -> Any:
        """The value (read from the weight file at each call: the caller keeps what it needs)."""
        if self.blob is not None:
            assert self.weights is not None
            return self.weights.read(self.blob, self.var)
        return self.value


@dataclass
class OpSpec:
    type: str
    name: str
    #: parameter -> the variable it reads, or a list of them (a tuple parameter, several bindings)
    inputs: dict[str, str | list[str]]
    outputs: list[VarSpec]
    has_blocks: bool = False


@dataclass
class FunctionSpec:
    name: str
    inputs: list[VarSpec]
    ops: list[OpSpec]
    outputs: list[str]
    variables: dict[str, VarSpec] = field(default_factory=dict)  # every variable by name
    consts: dict[str, ConstSpec] = field(default_factory=dict)  # constant variables by name


@dataclass
class ProgramSpec:
    specification_version: int
    functions: dict[str, FunctionSpec]


def _tensor_type(value_type: Any, where: str) -> VarSpec:
    kind = value_type.WhichOneof("type")
    state = kind == "stateType"
    if state:
        value_type = value_type.stateType.wrappedType
        kind = value_type.WhichOneof("type")
    if kind != "tensorType":
        raise ReadError(f"{where}: a {kind or 'missing'} type (only tensors and states are read)")
    tensor = value_type.tensorType
    type_name = _data_type_name(tensor.dataType)
    if type_name not in _TYPES:
        raise ReadError(f"{where}: data type {type_name} is not supported")
    dims: list[int | None] = []
    variadic = False
    for dim in tensor.dimensions:
        which = dim.WhichOneof("dimension")
        dims.append(int(dim.constant.size) if which == "constant" else None)
        variadic = variadic or (which == "unknown" and dim.unknown.variadic)
    if len(dims) != tensor.rank:
        raise ReadError(f"{where}: rank {tensor.rank} with {len(dims)} dimensions")
    return VarSpec("", _TYPES[type_name][0], None if variadic else tuple(dims), state, _TYPES[type_name][1])


def _data_type_name(code: int) -> str:
    from ..coreml.proto import module

    names = module("MIL_pb2").DataType
    return names.Name(code) if code in names.values() else str(code)


def _unpack(packed: np.ndarray, bits: int, count: int, signed: bool) -> np.ndarray:
    """Sub-byte integers packed from the least significant bit up -> one per element."""
    from ..util.bits import unpack_bits

    try:
        values = unpack_bits(packed, bits, count)
    except ValueError as error:
        raise ReadError(str(error)) from None
    if signed:  # two's complement in ``bits`` bits
        return np.where(values >= 1 << (bits - 1), values.astype(np.int16) - (1 << bits), values).astype(np.int8)
    return values


def _count(shape: tuple[int | None, ...] | None, where: str) -> int:
    if shape is None or any(d is None for d in shape):
        raise ReadError(f"{where}: a constant with unknown dimensions {shape}")
    return math.prod(int(d or 0) for d in shape)


def _finish(array: np.ndarray, var: VarSpec) -> Any:
    """A value as coremltools' loader hands it over: arrays reshaped, rank 0 as a numpy scalar."""
    if var.shape == ():
        first = array.reshape(-1)[0]
        return str(first) if var.dtype is np.str_ else var.dtype(first)
    return array.reshape(tuple(int(d or 0) for d in var.shape or ()))


def _immediate(value: Any, var: VarSpec, where: str) -> Any:
    immediate = value.immediateValue
    if immediate.WhichOneof("value") != "tensor":
        raise ReadError(f"{where}: a {immediate.WhichOneof('value')} immediate value is not supported")
    tensor = immediate.tensor
    which = tensor.WhichOneof("value")
    count = _count(var.shape, where)
    if which == "bytes":
        data = tensor.bytes.values
        if var.bits:
            return _finish(_unpack(np.frombuffer(data, np.uint8), var.bits, count, var.dtype is np.int8), var)
        itemsize = np.dtype(var.dtype).itemsize
        if len(data) != count * itemsize:
            raise ReadError(f"{where}: {len(data)} bytes for {count} {np.dtype(var.dtype).name} values")
        return _finish(np.frombuffer(data, var.dtype).copy(), var)
    if which is None:
        raise ReadError(f"{where}: a tensor value with no values")
    values = list(getattr(tensor, which).values)
    if len(values) != count:
        raise ReadError(f"{where}: {len(values)} values for shape {var.shape}")
    return _finish(np.array(values).astype(var.dtype), var)


class _Weights:
    """A package's weight files, read by offset."""

    def __init__(self, package: Path):
        self.package = package
        self.directory = package / "Data" / "com.apple.CoreML" / "weights"
        self._located: dict[str, Path] = {}
        self._sizes: dict[Path, int] = {}

    def locate(self, file_name: str, where: str) -> Path:
        """``@model_path/weights/weight.bin`` -> that file in the package's weights directory, which
        must lie inside the package itself (neither it nor the file a link out of it); each name
        looked up once."""
        if file_name not in self._located:
            base = file_name.rsplit("/", 1)[-1]
            path = self.directory / base
            inside = (
                path.resolve().parent == self.directory.resolve() and self.package.resolve() in path.resolve().parents
            )
            if base in ("", ".", "..") or not path.is_file() or not inside:
                raise ReadError(f"{where}: weight file {file_name!r} is not a file in {self.directory}")
            self._located[file_name] = path
        return self._located[file_name]

    def read(self, blob: tuple[Path, int], var: VarSpec) -> Any:
        path, offset = blob
        where = f"{path.name} at offset {offset}"
        size = self._sizes.get(path)
        if size is None:
            size = self._sizes[path] = path.stat().st_size
        count = _count(var.shape, where)
        with path.open("rb") as file:
            if offset < _BLOB_HEADER or offset + _BLOB_METADATA.size > size:
                raise ReadError(f"{where}: no blob metadata there (file of {size} bytes)")
            file.seek(offset)
            sentinel, code, nbytes, data_offset = _BLOB_METADATA.unpack(file.read(_BLOB_METADATA.size))
            if sentinel != _SENTINEL:
                raise ReadError(f"{where}: blob metadata without its sentinel")
            if data_offset + nbytes > size:
                raise ReadError(f"{where}: {nbytes} bytes at {data_offset} run past the file's end ({size} bytes)")
            if var.bits:
                need = (count * var.bits + 7) // 8
            else:
                need = count * np.dtype(var.dtype).itemsize
                expected = _BLOB_CODES.get(var.dtype)
                if expected is not None and code != expected:
                    raise ReadError(
                        f"{where}: blob data type code {code}, the program declares {np.dtype(var.dtype).name}"
                    )
            if nbytes < need:
                raise ReadError(f"{where}: {nbytes} bytes for shape {var.shape} ({need} needed)")
            file.seek(data_offset)
            raw = np.empty(need, np.uint8)
            if file.readinto(raw.data) != need:
                raise ReadError(f"{where}: the file ended early")
        if var.bits:
            return _finish(_unpack(raw, var.bits, count, var.dtype is np.int8), var)
        return _finish(raw.view(var.dtype), var)


def read_program(package: str | Path) -> ProgramSpec:
    """The ML program of ``package`` (an .mlpackage directory)."""
    from ..coreml.tools import PackageError, load_package_spec

    package = Path(package)
    try:
        spec = load_package_spec(package)
    except PackageError as exc:
        raise ReadError(str(exc)) from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise ReadError(f"{package} is not an ML program (type {spec.WhichOneof('Type')})")
    program = spec.mlProgram
    if program.version != 1:
        raise ReadError(f"{package}: ML program version {program.version} (1 is read)")
    weights = _Weights(package)
    functions = {}
    for name, function in program.functions.items():
        functions[name] = _function(name, function, weights)
    return ProgramSpec(int(spec.specificationVersion), functions)


def _var(named: Any, where: str) -> VarSpec:
    return _tensor_type(named.type, where).named(named.name)


def _const(fn: FunctionSpec, op_name: str, var: VarSpec, value: Any, weights: _Weights, where: str) -> ConstSpec:
    """A constant from a ``Value`` message: written in the spec (read now) or in a weight file."""
    if value.type.WhichOneof("type") != "tensorType":
        raise ReadError(f"{where}: a constant of type {value.type.WhichOneof('type')} is not supported")
    which = value.WhichOneof("value")
    if which == "blobFileValue":
        path = weights.locate(value.blobFileValue.fileName, where)
        const = ConstSpec(op_name, var, blob=(path, int(value.blobFileValue.offset)), weights=weights)
    elif which == "immediateValue":
        const = ConstSpec(op_name, var, value=_immediate(value, var, where))
    else:
        raise ReadError(f"{where}: a constant without a value")
    fn.variables[var.name] = var
    fn.consts[var.name] = const
    return const


def _name_of(op: Any, where: str) -> str:
    """An op's ``name`` attribute ("" when it has none)."""
    if "name" not in op.attributes:
        return ""
    names = op.attributes["name"].immediateValue.tensor.strings.values
    if len(names) != 1:
        raise ReadError(f"{where}: an op named by {len(names)} strings")
    return str(names[0])


def _function(name: str, function: Any, weights: _Weights) -> FunctionSpec:
    where = f"function {name!r}"
    inputs = [_var(named, f"{where}, input {named.name!r}") for named in function.inputs]
    if function.opset not in function.block_specializations:
        raise ReadError(f"{where}: no block for its opset {function.opset!r}")
    block = function.block_specializations[function.opset]
    fn = FunctionSpec(name, inputs, [], list(block.outputs))
    fn.variables.update((v.name, v) for v in inputs)
    operations = list(block.operations)
    index = 0
    while index < len(operations):
        op = operations[index]
        index += 1
        op_name = _name_of(op, f"{where}, op #{index - 1} {op.type}")
        at = f"{where}, op {op.type} {op_name or '#' + str(index - 1)!r}"
        if op.type == "const":
            if len(op.outputs) != 1 or "val" not in op.attributes:
                raise ReadError(f"{at}: a const needs one output and a val")
            var = _var(op.outputs[0], at)
            _const(fn, op_name or var.name, var, op.attributes["val"], weights, at)
            continue
        inputs_of: dict[str, str | list[str]] = {}
        for param, value in op.attributes.items():  # iOS16 constexpr ops hold their data as attributes
            if param == "name":
                continue
            anon = _tensor_type(value.type, f"{at}, {param}").named(f"{op_name}::{param}")
            _const(fn, anon.name, anon, value, weights, f"{at}, {param}")
            inputs_of[param] = anon.name
        for param, argument in op.inputs.items():
            names = []
            for number, binding in enumerate(argument.arguments):
                which = binding.WhichOneof("binding")
                if which == "name":
                    if binding.name not in fn.variables:
                        raise ReadError(f"{at}: reads {binding.name!r}, defined nowhere before it")
                    names.append(binding.name)
                elif which == "value":
                    anon = _tensor_type(binding.value.type, at).named(f"{op_name}::{param}::{number}")
                    _const(fn, anon.name, anon, binding.value, weights, f"{at}, {param}")
                    names.append(anon.name)
                else:
                    raise ReadError(f"{at}: argument {param!r} has an empty binding")
            tuple_param = param in TUPLE_PARAMS.get(op.type, ())
            inputs_of[param] = names if tuple_param or len(names) != 1 else names[0]
        outputs = [_var(named, at) for named in op.outputs]
        op_type = op.type
        if op.type == "write_state":
            # coremltools' coreml_update_state, written as a write_state followed by a read_state of
            # the same state when its result is read (the write named after it plus "_write_state",
            # the read by its name), as the write alone when not: read back as that op, with the
            # read's output or none
            op_type = "coreml_update_state"
            if not isinstance(inputs_of.get("input"), str) or not isinstance(inputs_of.get("data"), str):
                raise ReadError(f"{at}: a write_state needs one input and one data")
            inputs_of = {"state": inputs_of["input"], "value": inputs_of["data"]}
            op_name = op_name.removesuffix("_write_state")
            following = operations[index] if index < len(operations) else None
            if (
                following is not None
                and following.type == "read_state"
                and "input" in following.inputs
                and list(following.inputs["input"].arguments) == list(op.inputs["input"].arguments)
            ):
                outputs = [_var(named, at) for named in following.outputs]
                index += 1
                op_name = _name_of(following, at) or op_name
        for var in outputs:
            fn.variables[var.name] = var
        fn.ops.append(OpSpec(op_type, op_name, inputs_of, outputs, bool(op.blocks)))
    for output in fn.outputs:
        if output not in fn.variables:
            raise ReadError(f"{where}: output {output!r} is defined nowhere")
    return fn
