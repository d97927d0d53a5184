"""coremltools' generated protobuf messages (``Model``, ``MIL``), without importing coremltools.

Importing ``coremltools.proto`` runs coremltools' package initialiser first, which imports torch,
scikit-learn and transformers when they are installed: 2.6 s of the 12 s a `zoo run kokoro
--backend mil` took (measured 2026-12-05, `python -X importtime`), for a process that only reads
a package. The generated modules themselves need nothing but protobuf, so they are imported here
as a private package whose path is coremltools' ``proto`` directory (50 ms). When coremltools is
already imported its own modules are used; either way the message classes are the same ones:
protobuf keeps one class per message descriptor, and the descriptors are the same files.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

_ALIAS = "zoo_coremltools_proto"


def module(name: str) -> Any:
    """coremltools' generated module ``name`` (``Model_pb2``, ``MIL_pb2``, ``FeatureTypes_pb2``)."""
    loaded = sys.modules.get(f"coremltools.proto.{name}")
    if loaded is not None:
        return loaded
    if _ALIAS not in sys.modules:
        found = importlib.util.find_spec("coremltools")
        if found is None or found.origin is None:
            raise ImportError("coremltools is not installed: zoo reads CoreML packages with its protobuf messages")
        package = types.ModuleType(_ALIAS)
        package.__path__ = [str(Path(found.origin).parent / "proto")]
        sys.modules[_ALIAS] = package
    return importlib.import_module(f"{_ALIAS}.{name}")
