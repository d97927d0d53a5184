"""A runtime that logs what a run loop does: every call (function, each input's and output's name,
shape and dtype, the states the function has), every state reset and load, in the order the loop
made them — the log a plugin's loop contract is checked against (``zoo.core.plugin.contract``)."""

from __future__ import annotations

import threading
from typing import Any, Mapping

from ..plugin.contract import Event
from .backends import ComponentRuntime


def _described(values: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    import numpy as np

    out = {}
    for name, value in values.items():
        array = np.asarray(value)
        out[name] = (tuple(int(d) for d in array.shape), str(array.dtype))
    return out


class RecordingRuntime(ComponentRuntime):
    """Runs every call on ``inner`` and logs it (``log``: ``Event``s). A call is logged when it starts,
    under a lock: a loop that calls from a worker thread is logged in the order its calls began.

    Its backend is not ``torch`` even over the traceables: a loop then passes what it passes a package
    (kokoro's predictor gets its padded bucket, not the exact-length tokens it gets on torch)."""

    backend = "recording"

    def __init__(self, inner: ComponentRuntime):
        super().__init__(inner.constants)
        self.inner = inner
        self.log: list[Event] = []
        self._lock = threading.Lock()

    def _states(self, component: str, function: str) -> tuple[str, ...]:
        traceables = getattr(self.inner, "traceables", {})
        traceable = traceables.get(component, {}).get(function)
        return tuple(s.name for s in traceable.states) if traceable is not None else ()

    def _run(self, component: str, function: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        # the base class's __call__ counts the call, as every runtime's does
        with self._lock:
            index = len(self.log)
            self.log.append(
                Event("call", component, function, _described(inputs), {}, self._states(component, function))
            )
        out = self.inner(component, inputs, function)
        with self._lock:
            event = self.log[index]
            self.log[index] = Event("call", component, function, event.inputs, _described(out), event.states)
        return out

    def input_dtype(self, component: str, name: str, function: str = "main") -> Any:
        return self.inner.input_dtype(component, name, function)

    def reset_states(self) -> None:
        with self._lock:
            self.log.append(Event("reset"))
        self.inner.reset_states()

    def load_states(self, component: str, values: Mapping[str, Any], function: str = "main") -> None:
        with self._lock:
            self.log.append(Event("load", component, function))
        self.inner.load_states(component, values, function)
