"""Component runtimes: one interface, three backends.

A plugin's ``run_loop`` drives its components only through
``runtime(component, inputs, function="main") -> {output: array}`` with numpy
inputs and outputs, so the same loop runs on the torch traceables, on the
exported packages through zoo's MIL interpreter, or on CoreML itself (macOS).
Every call is counted per component.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from .spec import Traceable

BACKENDS = ("torch", "mil", "coreml")


class BackendUnavailable(RuntimeError):
    pass


class ComponentRuntime:
    backend = "?"

    def __init__(self, constants: Mapping[str, Path]):
        self.constants = {k: Path(v) for k, v in constants.items()}
        self.calls: Counter[str] = Counter()

    def __call__(self, component: str, inputs: Mapping[str, Any], function: str = "main") -> dict[str, Any]:
        self.calls[component if function == "main" else f"{component}.{function}"] += 1
        return self._run(component, function, inputs)

    def _run(self, component: str, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


class TorchRuntime(ComponentRuntime):
    """Runs the traceables themselves; stateful modules keep their state across calls."""

    backend = "torch"

    def __init__(self, traceables: Mapping[str, Mapping[str, Traceable]], constants: Mapping[str, Path]):
        super().__init__(constants)
        self.traceables = traceables

    def _run(self, component: str, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        try:
            traceable = self.traceables[component][function]
        except KeyError:
            raise KeyError(f"no component {component!r} function {function!r}; have {sorted(self.traceables)}") from None
        return traceable.run(inputs, fresh_state=False)


class CoreMLRuntime(ComponentRuntime):
    """Runs the exported packages with the CoreML framework (macOS only)."""

    backend = "coreml"

    def __init__(self, packages: Mapping[str, Path], constants: Mapping[str, Path]):
        from .validation import coreml_available

        ok, reason = coreml_available()
        if not ok:
            raise BackendUnavailable(f"backend 'coreml': {reason}; use --backend mil or --backend torch")
        super().__init__(constants)
        self.packages = {k: Path(v) for k, v in packages.items()}
        self._models: dict[tuple[str, str], Any] = {}
        self._states: dict[tuple[str, str], Any] = {}

    def _model(self, component: str, function: str) -> Any:
        key = (component, function)
        if key not in self._models:
            import coremltools as ct

            kwargs = {} if function == "main" else {"function_name": function}
            model = ct.models.MLModel(str(self.packages[component]), **kwargs)
            self._models[key] = model
            if model.get_spec().description.state:
                self._states[key] = model.make_state()
        return self._models[key]

    def _run(self, component: str, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        model = self._model(component, function)
        state = self._states.get((component, function))
        out = model.predict(dict(inputs), state=state) if state is not None else model.predict(dict(inputs))
        return dict(out)


def predict_coreml(package: Path, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """One stateless CoreML prediction (used by the ``coreml`` validation level)."""
    runtime = CoreMLRuntime({"c": package}, {})
    return runtime("c", inputs, function)
