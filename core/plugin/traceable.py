"""What the hooks hand the core: the loaded upstream model (``Reference``), fixed-shape torch functions
with their inputs, outputs, states and parity examples (``Traceable``), and whole-loop cases
(``LoopCase``). Plain data: torch modules are only referenced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

from .spec import Tolerance


@dataclass
class Reference:
    """What ``load_reference`` returns: the upstream model and how it was made.

    ``model`` is whatever the plugin needs later (usually the upstream torch
    module). ``files`` maps each weights file actually read to its sha256, for
    the registry.
    """

    model: Any
    files: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorSpec:
    """An input of a traced function.

    ``flexible`` maps an axis to ``(lower, upper)`` bounds for a flexible
    (``RangeDim``) dimension; ``upper = -1`` means unbounded.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    flexible: Mapping[int, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class StateSpec:
    """A CoreML state (iOS18+) backed by a registered buffer of the module."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float16"


@dataclass
class Traceable:
    """One function of a component, ready for ``torch.jit.trace``.

    * ``module`` is called with the inputs in ``inputs`` order and returns a
      tensor or a tuple of tensors in ``outputs`` order.
    * ``examples`` are named numpy inputs; the first is used for tracing, all
      are used for parity and stored with the export so that the package can
      be re-checked later.
    * ``reference`` computes the same outputs with the upstream model
      (``reference(**inputs) -> {output: array}``); parity at the
      ``reference`` level compares ``module`` against it.
    * ``convert_options`` are passed to ``coremltools.convert`` (for example
      an ``op_selector`` keeping some ops in fp32 in an fp16 variant, or
      ``compute_precision="fp32"`` for a component that must stay fp32), but
      for two that change its default pass pipeline: ``remove_passes`` (pass
      names) and ``pass_options`` ({pass name: {option: value}}, e.g.
      ``{"common::const_elimination": {"skip_const_by_size": n}}``: results of
      more than n elements computed from constants stay computed in the
      package instead of being stored).
    """

    module: "torch.nn.Module"
    inputs: list[TensorSpec]
    outputs: list[str]
    examples: list[dict[str, "np.ndarray"]]
    reference: Callable[..., Mapping[str, "np.ndarray"]] | None = None
    states: list[StateSpec] = field(default_factory=list)
    convert_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.examples:
            raise ValueError("a Traceable needs at least one example input")
        names = [i.name for i in self.inputs]
        for example in self.examples:
            if sorted(example) != sorted(names):
                raise ValueError(f"example inputs {sorted(example)} do not match declared inputs {sorted(names)}")

    def run(self, inputs: Mapping[str, "np.ndarray"], fresh_state: bool = True) -> dict[str, "np.ndarray"]:
        """Run the torch module on numpy inputs.

        With ``fresh_state`` a stateful module runs on a copy (:func:`state_copy`), so its
        states start from their initial values and the module is left untouched.
        """
        import torch

        module = state_copy(self.module) if (self.states and fresh_state) else self.module
        args = [torch.from_numpy(_np_contiguous(inputs[spec.name])) for spec in self.inputs]
        with torch.no_grad():
            out = module(*args)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        if len(out) != len(self.outputs):
            raise ValueError(f"module returned {len(out)} outputs, declared {self.outputs}")
        return {name: t.detach().cpu().numpy() for name, t in zip(self.outputs, out)}


def state_copy(module: Any) -> Any:
    """A copy of ``module`` with its own buffers (the states a run writes) and the original's
    parameters, shared rather than copied: a run reads weights and writes only states, and a
    deep copy of vibevoice's tts_lm copied 1.2 GB of weights per parity run."""
    import copy

    return copy.deepcopy(module, memo={id(p): p for p in module.parameters()})


def _np_contiguous(a: "np.ndarray") -> "np.ndarray":
    import numpy as np

    return np.ascontiguousarray(a)


@dataclass
class LoopCase:
    """One whole-loop comparison returned by the ``loop_parity`` hook.

    ``actual`` is what the plugin's run loop produced on the torch traceables,
    ``expected`` what the upstream model generated end to end from the same
    inputs and noise; ``info`` says what was compared (text, frames, seed...).
    """

    name: str
    actual: Any
    expected: Any
    tolerance: Tolerance
    info: dict[str, Any] = field(default_factory=dict)
