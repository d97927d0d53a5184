"""Importing coremltools quietly.

Off macOS, coremltools logs a "Failed to load _MLModelProxy ..." warning for
each CoreML runtime binding it cannot find; that is expected on Linux (zoo
executes packages with its MIL interpreter there) and only clutters the output.
The ``zoo`` command also turns off coremltools' per-pass progress bars
(``TQDM_DISABLE``), since it reports its own progress; imported as a library,
zoo changes no process-wide setting.

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
from pathlib import Path
from typing import Any


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
    """The ``Model`` protobuf of ``package``, read without writing to it."""
    import_coremltools()  # first: quietly (see the module docstring)
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString(root_model_path(package).read_bytes())
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
    from coremltools.proto import FeatureTypes_pb2

    functions = {f.name: f.input for f in spec.description.functions}
    described = functions[function] if functions else spec.description.input
    kinds = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    numpy_of = {kinds.FLOAT16: np.float16, kinds.FLOAT32: np.float32, kinds.DOUBLE: np.float64, kinds.INT32: np.int32}
    for feature in described:
        if feature.name == name:
            return np.dtype(numpy_of[feature.type.multiArrayType.dataType])
    raise KeyError(f"no input {name!r} in function {function!r}; have {[f.name for f in described]}")
