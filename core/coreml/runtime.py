"""Apple's CoreML runtime (macOS only): packages loaded per function, their states, one prediction.

The ``coreml`` validation level and the ``coreml`` run backend both call this module; neither
calls the other.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Mapping

from ..plugin.errors import BackendUnavailable
from ..plugin.names import state_identifier

#: what executes the packages, as the ``coreml`` level records it and ``zoo run --json`` reports it.
#: A test seam that stands zoo's MIL interpreter in for CoreML (``tests/coreml_seam``) says so here:
#: a check it passed is recorded as the seam's, never as CoreML's.
ENGINE = "CoreML"


def load_model(package: Path, function: str) -> Any:
    """``package``'s ``function`` loaded by CoreML (coremltools' ``MLModel``)."""
    from .tools import import_coremltools

    ct = import_coremltools()
    kwargs = {} if function == "main" else {"function_name": function}
    return ct.models.MLModel(str(package), **kwargs)


def available() -> tuple[bool, str]:
    """(True, "") where the CoreML runtime can run (macOS), else (False, why not)."""
    if platform.system() != "Darwin":
        return False, f"the CoreML runtime only runs on macOS (this is {platform.system()})"
    return True, ""


class CoreMLModels:
    """Packages (component -> path) loaded with CoreML, one model per (component, function), with
    the states of those that have any."""

    def __init__(self, packages: Mapping[str, Path]):
        self.packages = {k: Path(v) for k, v in packages.items()}
        self._models: dict[tuple[str, str], Any] = {}
        self._states: dict[tuple[str, str], Any] = {}

    def model(self, component: str, function: str) -> Any:
        key = (component, function)
        if key not in self._models:
            try:
                model = load_model(self.packages[component], function)
            except Exception as exc:  # noqa: BLE001 - a damaged package: name it
                raise BackendUnavailable(
                    f"{self.packages[component]} cannot be loaded by CoreML ({type(exc).__name__}: {str(exc)[:200]})"
                ) from None
            self._models[key] = model
            if model.get_spec().description.state:
                self._states[key] = model.make_state()
        return self._models[key]

    def predict(self, component: str, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        model = self.model(component, function)
        state = self._states.get((component, function))
        out = model.predict(dict(inputs), state=state) if state is not None else model.predict(dict(inputs))
        return dict(out)

    def input_dtype(self, component: str, name: str, function: str = "main") -> Any:
        from .tools import spec_input_dtype

        return spec_input_dtype(self.model(component, function).get_spec(), name, function)

    def reset_states(self) -> None:
        self._states = {key: self._models[key].make_state() for key in self._states}

    def load_states(self, component: str, values: Mapping[str, Any], function: str = "main") -> None:
        """States named as the torch buffers are (``layers.0.cache.k``), written under CoreML's identifiers."""
        self.model(component, function)
        state = self._models[(component, function)].make_state()
        for name, value in values.items():
            state.write_state(state_identifier(name), value)  # coremltools >= 8: MLState.write_state
        self._states[(component, function)] = state


def predict(
    package: Path, function: str, inputs: Mapping[str, Any], states: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One CoreML prediction of ``package`` from fresh states (the ``coreml`` validation level)."""
    models = CoreMLModels({"c": package})
    if states:
        models.load_states("c", states, function)
    return models.predict("c", function, inputs)
