"""``manifest.json`` of a published folder: what it holds, read from the files themselves.

Every fact is read, not declared: each package's functions, inputs, outputs and states (names,
dtypes, shapes, flexible ranges) from its CoreML specification; the deployment target it needs from
the specification version, checked against the variant's; each constants file's arrays from its
safetensors header; every file's size and sha256 from the copy in the folder. The schema ships
beside this module (``schema/manifest-1.schema.json``) and the tests validate against it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ..coreml.tools import SPEC_TARGETS, TARGET_SPEC, load_package_spec
from ..registry.entry import ExportEntry
from ..util.hashing import file_sha256, tree_files

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("schema") / f"manifest-{SCHEMA_VERSION}.schema.json"
MANIFEST = "manifest.json"
#: a safetensors header larger than this is not read (the format's own limit is 100 MB)
MAX_HEADER_BYTES = 100 << 20


class ManifestError(ValueError):
    """A published folder that cannot be described or trusted (the message names the file)."""


def _array_type(feature: Any) -> dict[str, Any]:
    from coremltools.proto import FeatureTypes_pb2

    kinds = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    names = {kinds.FLOAT16: "float16", kinds.FLOAT32: "float32", kinds.DOUBLE: "float64", kinds.INT32: "int32"}
    kind = feature.type.WhichOneof("Type")
    if kind == "stateType":
        array = feature.type.stateType.arrayType
    elif kind == "multiArrayType":
        array = feature.type.multiArrayType
    else:
        return {"name": feature.name, "kind": kind or "unknown"}
    out: dict[str, Any] = {"name": feature.name, "dtype": names.get(array.dataType, str(array.dataType))}
    out["shape"] = [int(d) for d in array.shape]
    ranges = array.shapeRange.sizeRanges if array.WhichOneof("ShapeFlexibility") == "shapeRange" else []
    if ranges:
        out["flexible"] = {
            str(i): [int(r.lowerBound), int(r.upperBound)] for i, r in enumerate(ranges) if r.lowerBound != r.upperBound
        }
    return out


def package_io(package: Path) -> dict[str, Any]:
    """A package's functions (``main`` for a plain one) with their inputs, outputs and states, and the
    specification version / deployment target it needs, read from its specification."""
    spec = load_package_spec(package)
    described = list(spec.description.functions)
    if described:
        functions = {
            f.name: {
                "inputs": [_array_type(x) for x in f.input],
                "outputs": [_array_type(x) for x in f.output],
                "states": [_array_type(x) for x in f.state],
            }
            for f in described
        }
    else:
        d = spec.description
        functions = {
            "main": {
                "inputs": [_array_type(x) for x in d.input],
                "outputs": [_array_type(x) for x in d.output],
                "states": [_array_type(x) for x in d.state],
            }
        }
    version = int(spec.specificationVersion)
    return {"functions": functions, "spec_version": version, "needs": SPEC_TARGETS.get(version, f"spec {version}")}


def safetensors_arrays(path: Path) -> list[dict[str, Any]]:
    """The arrays a safetensors file holds (name, dtype, shape), read from its header only."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ManifestError(f"{path} is not a safetensors file (shorter than its header length)")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise ManifestError(f"{path}: its header claims {length} bytes, more than the file or the format allows")
        try:
            header = json.loads(f.read(length))
        except ValueError as exc:
            raise ManifestError(f"{path}: its header is not JSON ({exc})") from None
    return [
        {"name": name, "dtype": str(info.get("dtype")), "shape": [int(s) for s in info.get("shape", [])]}
        for name, info in sorted(header.items())
        if name != "__metadata__" and isinstance(info, dict)
    ]


def check_target(entry: ExportEntry, packages: dict[str, dict[str, Any]]) -> None:
    """Each package needs no later deployment target than its variant declares (states, grouped look-up
    tables and multifunction packages are iOS18 ops): else the export is in error, said by name."""
    declared = str(entry.variant.get("target", "iOS17"))
    limit = TARGET_SPEC.get(declared)
    for name, package in packages.items():
        if limit is not None and package["spec_version"] > limit:
            raise ManifestError(
                f"package {name} needs {package['needs']} (CoreML specification {package['spec_version']}) but the "
                f"variant {entry.variant_name} declares {declared}: the export is in error"
            )


def file_list(folder: Path) -> list[dict[str, Any]]:
    """Every file of ``folder`` but the manifest: relative path, size and sha256."""
    return [
        {"path": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in tree_files(folder)
        if p.relative_to(folder).as_posix() != MANIFEST
    ]


def build(folder: Path, entry: ExportEntry, zoo_version: str, loop: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of ``folder`` (the export's packages and constants copied in, under their export
    paths) as it is on disk; ``loop``: the plugin's loop contract (``LoopContract.as_dict``), if any."""
    packages = {c.name: {"path": c.path, **package_io(folder / c.path)} for c in entry.components}
    check_target(entry, packages)
    constants = {}
    for c in entry.constants:
        path = folder / c.path
        kind = "safetensors" if path.suffix == ".safetensors" else ("json" if path.suffix == ".json" else "file")
        constants[c.name] = {
            "path": c.path,
            "kind": kind,
            **({"arrays": safetensors_arrays(path)} if kind == "safetensors" else {}),
        }
    files = file_list(folder)
    weights = dict(entry.weights)
    return {
        "schema_version": SCHEMA_VERSION,
        "zoo_version": zoo_version,
        "export_id": entry.id,
        "model": entry.model,
        "plugin": dict(entry.plugin),
        "checkpoint": entry.checkpoint() or None,
        "weights": {
            "source": str(weights.get("source", "")),
            "random": entry.random_weights,
            "files": {str(k): str(v) for k, v in dict(weights.get("files", {})).items()},
        },
        "variant": {
            "name": entry.variant_name,
            "precision": entry.precision,
            "target": str(entry.variant.get("target", "")),
            "compression": str(entry.variant.get("compression", "none")),
        },
        "validation_level": entry.validation_level,
        "packages": packages,
        "constants": constants,
        "loop": loop,
        # each package's recorded parity inputs and torch outputs, and the checks the export passed:
        # what `zoo verify DIR --execute` runs and judges by, from the folder alone
        "parity": {p.name: p.path for p in entry.parity},
        "validation": [dict(v) for v in entry.validation],
        "files": files,
    }
