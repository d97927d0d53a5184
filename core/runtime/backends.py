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

from ..plugin.errors import BackendUnavailable
from ..plugin.traceable import Traceable

BACKENDS = ("torch", "mil", "coreml")


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
            (c, f): {
                name: buf.detach().clone()
                for name, buf in t.module.named_buffers()
                if name in {s.name for s in t.states}
            }
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
            buffers[spec.name].copy_(
                torch.as_tensor(value) if value is not None else torch.zeros_like(buffers[spec.name])
            )

    def _run(self, component: str, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        try:
            traceable = self.traceables[component][function]
        except KeyError:
            raise KeyError(
                f"no component {component!r} function {function!r}; have {sorted(self.traceables)}"
            ) from None
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
            from ..mil import MilProgram

            if component not in self.packages:
                raise KeyError(f"no component {component!r}; have {sorted(self.packages)}")
            try:
                self._programs[component] = MilProgram.load(self.packages[component])
            except Exception as exc:  # noqa: BLE001 - a damaged package: name it, whatever the parser raised
                raise BackendUnavailable(
                    f"{self.packages[component]} cannot be loaded by zoo's MIL interpreter "
                    f"({type(exc).__name__}: {str(exc)[:200]}); run `zoo verify`"
                ) from None
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
    """Runs the exported packages with the CoreML framework (macOS only): ``coreml.runtime``."""

    backend = "coreml"

    def __init__(self, packages: Mapping[str, Path], constants: Mapping[str, Path]):
        from ..coreml.runtime import CoreMLModels, available

        ok, reason = available()
        if not ok:
            raise BackendUnavailable(f"backend 'coreml': {reason}; use --backend mil or --backend torch")
        super().__init__(constants)
        self.models = CoreMLModels(packages)

    @property
    def engine(self) -> str:
        """What executes the packages (``coreml.runtime.ENGINE``: CoreML, or a test seam)."""
        from ..coreml import runtime

        return runtime.ENGINE

    def _run(self, component: str, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return self.models.predict(component, function, inputs)

    def input_dtype(self, component: str, name: str, function: str = "main") -> Any:
        return self.models.input_dtype(component, name, function)

    def reset_states(self) -> None:
        self.models.reset_states()

    def load_states(self, component: str, values: Mapping[str, Any], function: str = "main") -> None:
        self.models.load_states(component, values, function)
