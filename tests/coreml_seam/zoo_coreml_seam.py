"""A stand-in for CoreML on machines without it: coremltools' ``MLModel`` seam answered by zoo's MIL
interpreter, so the ``coreml`` level and ``zoo run --backend coreml`` run end to end on Linux.

What it proves is the seam (states made, written under CoreML's identifiers and carried between
predictions; a function loaded by name; inputs and outputs by name), never CoreML itself: ``install``
sets ``zoo.core.coreml.runtime.ENGINE``, which every check the level records and ``zoo run --json``
report, so nothing it passed reads as CoreML's. In a subprocess it is installed by this folder's
``sitecustomize`` (put the folder on PYTHONPATH); in-process, call ``install`` under monkeypatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

ENGINE = "zoo's MIL interpreter behind the CoreML seam (tests/coreml_seam), not CoreML"


class SeamState:
    """An ``MLState``: the function's state buffers, zeros as CoreML allocates them."""

    def __init__(self, values: dict[str, Any]):
        self.values = values

    def write_state(self, name: str, value: Any) -> None:
        import numpy as np

        if name not in self.values:
            raise KeyError(f"no state {name!r}; states: {', '.join(self.values)}")
        self.values[name][...] = np.asarray(value).astype(self.values[name].dtype)

    def read_state(self, name: str) -> Any:
        return self.values[name].copy()


class SeamModel:
    """An ``MLModel`` of one function of a saved package, executed by zoo's MIL interpreter."""

    def __init__(self, package: Path, function: str = "main"):
        from zoo.core.mil import load

        self.package, self.function = Path(package), function
        self.program = load(self.package)
        self.program.function(function)  # an unknown function fails here, as CoreML's load does

    def get_spec(self) -> Any:
        import coremltools as ct

        return ct.utils.load_spec(str(self.package))

    def make_state(self) -> SeamState:
        return SeamState(self.program.make_state(self.function))

    def predict(self, inputs: Mapping[str, Any], state: SeamState | None = None) -> dict[str, Any]:
        return self.program.run(dict(inputs), function=self.function, state=None if state is None else state.values)


def install(runtime: Any) -> None:
    """Point ``zoo.core.coreml.runtime`` (the module ``runtime``) at the seam."""
    runtime.ENGINE = ENGINE
    runtime.available = lambda: (True, "")
    runtime.load_model = SeamModel
