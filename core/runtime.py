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

from .spec import Traceable, state_identifier

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

    def input_dtype(self, component: str, name: str, function: str = "main") -> Any:
        """The numpy dtype a component's function declares for input ``name``.

        A loop that keeps a large input between calls (a KV cache) holds it in this dtype, so
        that no backend converts it at every call: an fp16 package's cache is kept in fp16.
        """
        import numpy as np

        return np.dtype(np.float32)

    def reset_states(self) -> None:
        """Start every stateful component from its initial state again (a new utterance)."""

    def load_states(self, component: str, values: Mapping[str, Any], function: str = "main") -> None:
        """Set a stateful component's states (by the torch buffer names; the rest start at zero),
        e.g. a KV cache prefilled with a voice prompt."""
        raise NotImplementedError(f"backend {self.backend!r} cannot load states")


class TorchRuntime(ComponentRuntime):
    """Runs the traceables themselves; stateful modules keep their state across calls."""

    backend = "torch"

    def __init__(self, traceables: Mapping[str, Mapping[str, Traceable]], constants: Mapping[str, Path]):
        super().__init__(constants)
        self.traceables = traceables
        self._initial = {
            (c, f): {name: buf.detach().clone() for name, buf in t.module.named_buffers() if name in {s.name for s in t.states}}
            for c, fns in traceables.items()
            for f, t in fns.items()
            if t.states
        }

    def input_dtype(self, component: str, name: str, function: str = "main") -> Any:
        import numpy as np

        spec = next(s for s in self.traceables[component][function].inputs if s.name == name)
        # the package may declare fp16; the torch modules compute in fp32 whatever it declares
        return np.dtype(np.float32) if np.dtype(spec.dtype).kind == "f" else np.dtype(spec.dtype)

    def reset_states(self) -> None:
        for (c, f), buffers in self._initial.items():
            current = dict(self.traceables[c][f].module.named_buffers())
            for name, value in buffers.items():
                current[name].copy_(value)

    def load_states(self, component: str, values: Mapping[str, Any], function: str = "main") -> None:
        import torch

        traceable = self.traceables[component][function]
        buffers = dict(traceable.module.named_buffers())
        for spec in traceable.states:
            value = values.get(spec.name)
            buffers[spec.name].copy_(torch.as_tensor(value) if value is not None else torch.zeros_like(buffers[spec.name]))

    def _run(self, component: str, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        try:
            traceable = self.traceables[component][function]
        except KeyError:
            raise KeyError(f"no component {component!r} function {function!r}; have {sorted(self.traceables)}") from None
        return traceable.run(inputs, fresh_state=False)


class MilRuntime(ComponentRuntime):
    """Runs the exported packages with zoo's MIL interpreter (any OS).

    States start as zeros, as CoreML allocates them, and persist across calls.
    """

    backend = "mil"

    def __init__(self, packages: Mapping[str, Path], constants: Mapping[str, Path]):
        super().__init__(constants)
        self.packages = {k: Path(v) for k, v in packages.items()}
        self._programs: dict[str, Any] = {}
        self._states: dict[tuple[str, str], Any] = {}
        for component in self.packages:  # load up front so that run timings measure the loop
            self.program(component)

    def program(self, component: str) -> Any:
        if component not in self._programs:
            from .mil import MilProgram

            if component not in self.packages:
                raise KeyError(f"no component {component!r}; have {sorted(self.packages)}")
            try:
                self._programs[component] = MilProgram.load(self.packages[component])
            except Exception as exc:  # noqa: BLE001 - a damaged package: name it, whatever the parser raised
                raise BackendUnavailable(f"{self.packages[component]} cannot be loaded by zoo's MIL interpreter "
                                         f"({type(exc).__name__}: {str(exc)[:200]}); run `zoo verify`") from None
        return self._programs[component]

    def _run(self, component: str, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        program = self.program(component)
        state = None
        if program.function(function).states:
            key = (component, function)
            if key not in self._states:
                self._states[key] = program.make_state(function)
            state = self._states[key]
        return program.run(inputs, function, state)

    def input_dtype(self, component: str, name: str, function: str = "main") -> Any:
        import numpy as np

        return np.dtype(self.program(component).function(function).inputs[name].dtype)

    def reset_states(self) -> None:
        self._states.clear()

    def load_states(self, component: str, values: Mapping[str, Any], function: str = "main") -> None:
        self._states[(component, function)] = self.program(component).make_state(function, initial=values)


class CoreMLRuntime(ComponentRuntime):
    """Runs the exported packages with the CoreML framework (macOS only)."""

    backend = "coreml"

    def __init__(self, packages: Mapping[str, Path], constants: Mapping[str, Path]):
        from .levels import coreml

        ok, reason = coreml.available()
        if not ok:
            raise BackendUnavailable(f"backend 'coreml': {reason}; use --backend mil or --backend torch")
        super().__init__(constants)
        self.packages = {k: Path(v) for k, v in packages.items()}
        self._models: dict[tuple[str, str], Any] = {}
        self._states: dict[tuple[str, str], Any] = {}

    def _model(self, component: str, function: str) -> Any:
        key = (component, function)
        if key not in self._models:
            from .coreml import import_coremltools

            ct = import_coremltools()

            kwargs = {} if function == "main" else {"function_name": function}
            try:
                model = ct.models.MLModel(str(self.packages[component]), **kwargs)
            except Exception as exc:  # noqa: BLE001 - a damaged package: name it
                raise BackendUnavailable(f"{self.packages[component]} cannot be loaded by CoreML ({type(exc).__name__}: {str(exc)[:200]})") from None
            self._models[key] = model
            if model.get_spec().description.state:
                self._states[key] = model.make_state()
        return self._models[key]

    def _run(self, component: str, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        model = self._model(component, function)
        state = self._states.get((component, function))
        out = model.predict(dict(inputs), state=state) if state is not None else model.predict(dict(inputs))
        return dict(out)

    def input_dtype(self, component: str, name: str, function: str = "main") -> Any:
        return spec_input_dtype(self._model(component, function).get_spec(), name, function)

    def reset_states(self) -> None:
        self._states = {key: self._models[key].make_state() for key in self._states}

    def load_states(self, component: str, values: Mapping[str, Any], function: str = "main") -> None:
        self._model(component, function)
        state = self._models[(component, function)].make_state()
        for name, value in values.items():
            state.write_state(state_identifier(name), value)  # coremltools >= 8: MLState.write_state
        self._states[(component, function)] = state


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


def predict_coreml(package: Path, function: str, inputs: Mapping[str, Any], states: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One CoreML prediction from fresh states (used by the ``coreml`` validation level); states are
    named as the torch buffers are (``layers.0.cache.k``) and written under CoreML's identifiers."""
    runtime = CoreMLRuntime({"c": package}, {})
    if states:
        runtime.load_states("c", states, function)
    return runtime._run("c", function, inputs)
