"""Bounds measured at export time, so that they hold for any weights.

A bound tuned on random weights refuses a trained checkpoint whose activations
are larger, and a bound loose enough for random weights' chaos lets real bugs
through on trained ones. So the ``reference`` level measures, on the very
inputs it checks and with the very weights being exported:

* ``float64``: the port and upstream both run in float64 (``float64.py``); they
  may differ only by summation order, whatever the weights: a port bug shows
  here at any scale.
* ``upstream_rel``: how far upstream's own float32 output is from its float64
  output. The port's float32 error (at the ``reference`` level, and a package's
  fp32 error at the ``mil``/``coreml`` levels) is bounded by a multiple of it.
* ``sensitivity``: for chaotic audio (a ``spectral_factor`` tolerance), how far
  the torch component itself moves, phase-blind, when its inputs are perturbed
  by the unit roundoff of a precision. A package is bounded by a multiple of the
  movement at its own precision: loose for chaotic random weights, tight for
  trained ones, honest for both.

The measurements are stored with the parity stage and every bound derived from
them is recorded with the figure it came from (``Check.basis``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..plugin.spec import UNIT_ROUNDOFF, Tolerance


@dataclass
class Calibration:
    #: worst rel of upstream's float32 outputs against its float64 outputs (None: not measured)
    upstream_rel: float | None = None
    #: precision name -> worst spectral distance of the torch component under a perturbation of that size
    sensitivity: dict[str, float] = field(default_factory=dict)
    #: worst rel difference the port's reduced-precision state storage makes to its outputs, against the
    #: same port with float32 states (components that keep state in fp16 by design: Tolerance.storage)
    storage_movement: float | None = None
    #: why the float64 run could not be made (then the float64 check is skipped, never passed)
    float64_skipped: str = ""

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        path = Path(path)
        return cls(**json.loads(path.read_text())) if path.exists() else cls()

    def resolve(self, tolerance: Tolerance, precision: str) -> tuple[Tolerance, str]:
        """The fixed bounds ``tolerance`` stands for when comparing at ``precision``, and how each was derived."""
        basis = []
        rel = tolerance.rel
        if tolerance.rounding_factor is not None:
            measured = self.upstream_rel
            scale, source = UNIT_ROUNDOFF["fp32"], "the fp32 unit roundoff"
            if measured is not None and measured > scale:
                scale, source = measured, f"upstream fp32 error {measured:.3g}"
            if tolerance.storage is not None:
                moved = self.storage_movement
                if moved is None:
                    raise ValueError(f"no {tolerance.storage} storage movement was measured for a storage bound")
                if moved > scale:
                    scale, source = moved, f"the port's own {tolerance.storage} state storage effect {moved:.3g}"
            rel = tolerance.rounding_factor * scale
            basis.append(f"rel ≤ {tolerance.rounding_factor:g} × {source}")
        spectral = tolerance.spectral_max
        if tolerance.spectral_factor is not None:
            moved = self.sensitivity.get(precision)
            if moved is None:
                raise ValueError(f"no {precision} sensitivity was measured for a spectral_factor bound")
            spectral = tolerance.spectral_factor * moved
            basis.append(
                f"spectral ≤ {tolerance.spectral_factor:g} × torch's own movement {moved:.3g} for a {precision} "
                "perturbation"
            )
        fixed = replace(
            tolerance,
            rel=rel,
            spectral_max=spectral,
            float64_rel=None,
            rounding_factor=None,
            spectral_factor=None,
            storage=None,
        )
        return fixed, "; ".join(basis)


def perturbed(example: Mapping[str, Any], size: float, seed: int) -> dict[str, Any]:
    """Each floating-point input multiplied by (1 ± size), signs drawn from ``seed``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for name in sorted(example):
        value = np.asarray(example[name])
        if np.issubdtype(value.dtype, np.floating):
            signs = rng.choice(np.array([-1.0, 1.0]), size=value.shape)
            value = (value.astype(np.float64) * (1.0 + size * signs)).astype(value.dtype)
        out[name] = value
    return out


def storage_effect(traceable: Any, examples: Sequence[Mapping[str, Any]]) -> float:
    """Worst rel difference the port's reduced-precision state storage makes: its outputs with the
    state buffers as declared (e.g. fp16 KV caches) against the same module with them in float32."""
    import dataclasses

    import torch

    from ..plugin.traceable import state_copy
    from .metrics import compare

    if not traceable.states:
        return 0.0
    wide = state_copy(traceable.module)
    with torch.no_grad():
        for state in traceable.states:
            buffer = wide.get_buffer(state.name)
            buffer.data = buffer.data.float()
    wide_traceable = dataclasses.replace(traceable, module=wide)
    worst = 0.0
    for example in examples:
        narrow_out = traceable.run(example)
        wide_out = dataclasses.replace(wide_traceable, module=state_copy(wide)).run(example, fresh_state=False)
        for name in traceable.outputs:
            worst = max(worst, compare(narrow_out[name], wide_out[name])["rel"])
    return worst


def sensitivity(
    traceable: Any,
    cases: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    sizes: Mapping[str, float],
    draws: int = 2,
) -> dict[str, float]:
    """For each named perturbation size: the worst spectral distance of the traceable's outputs
    when its floating-point inputs move by that much (relative, random signs), over ``cases`` of
    (inputs, the traceable's outputs on them)."""
    from .metrics import spectral_distance

    worst = dict.fromkeys(sizes, 0.0)
    for example, base in cases:
        for name, size in sizes.items():
            for seed in range(draws):
                moved = traceable.run(perturbed(example, size, seed))
                for output in traceable.outputs:
                    worst[name] = max(worst[name], spectral_distance(moved[output], base[output]))
    return worst
