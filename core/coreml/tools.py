"""Importing coremltools quietly.

Off macOS, coremltools logs a "Failed to load _MLModelProxy ..." warning for
each CoreML runtime binding it cannot find; that is expected on Linux (zoo
executes packages with its MIL interpreter there) and only clutters the output.
The ``zoo`` command also turns off coremltools' per-pass progress bars
(``TQDM_DISABLE``), since it reports its own progress; imported as a library,
zoo changes no process-wide setting.

``validated_once`` lets zoo's conversions validate each pass pipeline's program once, at its
end, instead of after every pass; ``lean_overflow_check`` makes coremltools' fp16 overflow test
of a constant read it in slices instead of building index arrays eight times its size.

It also reads a package's model specification without coremltools'
``ModelPackage``, which rewrites ``Manifest.json`` each time a package is opened:
a cached or exported package is read by several processes at once and hashed,
and must never be written by reading it.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def import_coremltools() -> Any:
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    if platform.system() != "Darwin":
        previous = logging.root.manager.disable  # restored as it was: a host application's setting stays
        logging.disable(logging.WARNING)
        try:
            import coremltools
        finally:
            logging.disable(previous)
    import coremltools

    return coremltools


_VALIDATION = threading.local()  # .once: inside validated_once; .deferred: inside a pipeline then
_LEAN = threading.local()  # .on: inside lean_overflow_check
_QUICK = threading.local()  # .on: inside quick_immediate_values
#: the numpy types coremltools writes element by element into a program's immediate values (the
#: others go in as bytes or strings), and the size from which the quick path writes them
QUICK_DTYPES = ("bool", "int32", "int64", "float32", "float64")
QUICK_MIN_ELEMENTS = 64
#: elements of a constant the lean overflow check reads at once (4 MB of float32)
OVERFLOW_SLICE = 1 << 20
_PATCH_LOCK = threading.Lock()
_PATCHED: list[bool] = []


@contextmanager
def validated_once() -> Iterator[None]:
    """Conversions in this block (this thread) validate the MIL program once after each pass
    pipeline rather than after each of its passes (~100 per conversion), as coremltools does.

    Measured (kokoro small, fp16, one core, 2026-12-04): converting the predictor took 16.3 s and
    the decoder 11.1 s with the per-pass checks, 11.5 s and 8.8 s with one per pipeline, and the
    saved specifications are equal (tests/mil/test_mil_ops.py holds a pipeline to that). What a
    pass leaves broken is still refused, by the check at the pipeline's end; left out is the check
    that every op still carries its source scope (debug information) after dead-code passes.
    Outside this block, and in other threads, coremltools' own behaviour is untouched."""
    with _switched_on(_VALIDATION, "once"):
        yield


@contextmanager
def lean_overflow_check() -> Iterator[None]:
    """Conversions in this block (this thread) decide whether a float32 constant overflows fp16
    (coremltools' ``FP16ComputePrecision.fp16_overflow``: its largest finite magnitude below 1e38
    exceeds 65504) slice by slice, with the same answer.

    coremltools indexes the constant with ``np.where`` of a mask: three int64 index arrays for a
    2-D weight, 24 bytes per element. Measured on vibevoice's lm (its 151,936 x 896 token table,
    full size, 2026-12-04): with the sliced check its conversion peaked at 4.8 GB, with coremltools' at 8.3 GB."""
    with _switched_on(_LEAN, "on"):
        yield


@contextmanager
def quick_immediate_values() -> Iterator[None]:
    """Conversions in this block (this thread) write a constant that stays inside the program (a
    bool, int32/int64 or float32/float64 tensor of 64 elements or more: coremltools puts only
    float16/float32 and 8-bit ones, 16/32-bit integers from iOS18, in the weight file) by appending
    all its elements at once; coremltools converts each to a Python scalar through its type tables
    first. The protobuf written is the same, byte for byte (tests/mil/test_mil_ops.py).

    Measured (2026-12-04, one process, idle): pocket_tts's voice encoder keeps its 2000 x 2000
    bool attention mask in the program; writing it took 4.4 s, about 6 % of the whole export."""
    with _switched_on(_QUICK, "on"):
        yield


@contextmanager
def zoo_conversion() -> Iterator[None]:
    """The switches every conversion and compressed save of zoo runs under, in one place:
    ``validated_once``, ``lean_overflow_check`` and ``quick_immediate_values``."""
    with validated_once(), lean_overflow_check(), quick_immediate_values():
        yield


@contextmanager
def _switched_on(flags: threading.local, name: str) -> Iterator[None]:
    """``flags.name`` is True in this block (this thread), as it was after; coremltools patched."""
    _patch_coremltools()
    previous = getattr(flags, name, False)
    setattr(flags, name, True)
    try:
        yield
    finally:
        setattr(flags, name, previous)


def overflows_fp16(value: Any) -> bool:
    """True if a finite magnitude below 1e38 in ``value`` exceeds fp16's largest (65504); NaN and
    magnitudes of 1e38 or more (infinities, ``-inf`` masks) are left out, as coremltools does."""
    import numpy as np

    flat = np.ravel(value)
    for start in range(0, flat.size, OVERFLOW_SLICE):
        part = np.abs(flat[start : start + OVERFLOW_SLICE])
        if np.max(part, where=part < 1e38, initial=0.0) > 65504:
            return True
    return False


def _patch_coremltools() -> None:
    """Wrap ``Program.validate`` (a no-op while a pipeline runs under ``validated_once``),
    ``PassPipelineManager.apply_pipeline`` (validates once when its passes are done),
    ``FP16ComputePrecision.fp16_overflow`` (sliced under ``lean_overflow_check``) and the MIL
    backend's ``create_tensor_value`` (one append under ``quick_immediate_values``), once."""
    with _PATCH_LOCK:
        if _PATCHED:
            return
        import_coremltools()
        from coremltools.converters.mil.mil.passes.defs.quantization import FP16ComputePrecision
        from coremltools.converters.mil.mil.passes.pass_pipeline import PassPipelineManager
        from coremltools.converters.mil.mil.program import Program

        fp16_overflow = FP16ComputePrecision.fp16_overflow

        def sliced_fp16_overflow(op: Any) -> bool:
            if not getattr(_LEAN, "on", False):
                return bool(fp16_overflow(op))
            for inputs in op.inputs.values():
                for var in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
                    if (
                        var.op is not None
                        and var.op.op_type == "const"
                        and var.is_tensor_or_scalar_of(dtype="fp32")
                        and overflows_fp16(var.op.val.val)
                    ):
                        return True
            return False

        validate = Program.validate
        apply_pipeline = PassPipelineManager.apply_pipeline

        def validate_unless_deferred(self: Any, *args: Any, **kwargs: Any) -> None:
            if not getattr(_VALIDATION, "deferred", False):
                validate(self, *args, **kwargs)

        def apply_then_validate(prog: Any, pass_pipeline: Any) -> None:
            if not getattr(_VALIDATION, "once", False) or getattr(_VALIDATION, "deferred", False):
                apply_pipeline(prog, pass_pipeline)
                return
            validate(prog)  # the program as it came in, as coremltools checks it
            _VALIDATION.deferred = True
            try:
                apply_pipeline(prog, pass_pipeline)
            finally:
                _VALIDATION.deferred = False
            validate(prog)  # what the passes made (the debug scope check after dead-code passes is left out)

        from coremltools.converters.mil.backend.mil import helper
        from coremltools.converters.mil.mil import types

        create_tensor_value = helper.create_tensor_value

        def quick_tensor_value(np_tensor: Any) -> Any:
            if (
                not getattr(_QUICK, "on", False)
                or type(np_tensor).__name__ != "ndarray"
                or np_tensor.dtype.name not in QUICK_DTYPES
                or np_tensor.size < QUICK_MIN_ELEMENTS
            ):
                return create_tensor_value(np_tensor)
            from coremltools.proto import MIL_pb2

            builtin = types.numpy_type_to_builtin_type(np_tensor.dtype)
            value = MIL_pb2.Value(
                type=helper.create_valuetype_tensor(np_tensor.shape, helper.types_to_proto_primitive(builtin))
            )
            helper._tensor_field_by_type(value.immediateValue.tensor, builtin).extend(np_tensor.reshape(-1).tolist())
            return value

        helper.create_tensor_value = quick_tensor_value  # create_immediate_value reads the module's name
        FP16ComputePrecision.fp16_overflow = staticmethod(sliced_fp16_overflow)
        Program.validate = validate_unless_deferred
        PassPipelineManager.apply_pipeline = staticmethod(apply_then_validate)
        _PATCHED.append(True)


class PackageError(ValueError):
    """A directory that is not a readable ``.mlpackage``."""


def root_model_path(package: str | Path) -> Path:
    """The model specification file of ``package``, read from its ``Manifest.json``
    (``rootModelIdentifier`` names an entry of ``itemInfoEntries`` whose ``path`` is
    relative to ``Data/``); the path must stay inside the package."""
    package = Path(package)
    manifest = package / "Manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entry = data["itemInfoEntries"][data["rootModelIdentifier"]]
        rel = entry["path"]
    except FileNotFoundError:
        raise PackageError(f"{package} is not an .mlpackage (no Manifest.json)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PackageError(f"{manifest}: no root model entry ({type(exc).__name__}: {exc})") from None
    if not isinstance(rel, str):
        raise PackageError(f"{manifest}: the root model path is not a string")
    data_dir = (package / "Data").resolve()
    path = (data_dir / rel).resolve()
    if data_dir not in path.parents or not path.is_file():
        raise PackageError(f"{manifest}: the root model {rel!r} is not a file inside {package / 'Data'}")
    return path


def load_package_spec(package: str | Path) -> Any:
    """The ``Model`` protobuf of ``package``, read without writing to it (and without importing
    coremltools: ``proto.module``)."""
    from google.protobuf.message import DecodeError

    from .proto import module

    path = root_model_path(package)
    spec = module("Model_pb2").Model()
    try:
        spec.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise PackageError(f"{path}: not a CoreML model specification ({exc})") from None
    return spec


#: the CoreML specification version each deployment target introduced (coremltools' targets)
SPEC_TARGETS = {4: "iOS13", 5: "iOS14", 6: "iOS15", 7: "iOS16", 8: "iOS17", 9: "iOS18"}
#: the specification version a declared deployment target reads, at most
TARGET_SPEC = {"iOS16": 7, "macOS13": 7, "iOS17": 8, "macOS14": 8, "iOS18": 9, "macOS15": 9}


def target_problem(package: str | Path, declared: str, name: str = "") -> str:
    """Why ``package`` does not run on the ``declared`` deployment target ("" when it does): states,
    multifunction packages and grouped look-up tables are iOS18 (specification 9)."""
    version = int(load_package_spec(package).specificationVersion)
    limit = TARGET_SPEC.get(declared)
    if limit is None or version <= limit:
        return ""
    needs = SPEC_TARGETS.get(version, f"specification {version}")
    return (
        f"package {name or Path(package).stem} needs {needs} (CoreML specification {version}) but the variant "
        f"declares {declared}: the export is in error"
    )


def spec_input_dtype(spec: Any, name: str, function: str = "main") -> Any:
    """The numpy dtype of multiarray input ``name`` in a CoreML model spec (of ``function`` in a
    multifunction model)."""
    import numpy as np

    from .proto import module

    FeatureTypes_pb2 = module("FeatureTypes_pb2")

    functions = {f.name: f.input for f in spec.description.functions}
    described = functions[function] if functions else spec.description.input
    kinds = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    numpy_of = {kinds.FLOAT16: np.float16, kinds.FLOAT32: np.float32, kinds.DOUBLE: np.float64, kinds.INT32: np.int32}
    for feature in described:
        if feature.name == name:
            return np.dtype(numpy_of[feature.type.multiArrayType.dataType])
    raise KeyError(f"no input {name!r} in function {function!r}; have {[f.name for f in described]}")
