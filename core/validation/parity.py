"""Parity data: the example inputs of every function, the traceable's outputs on
them, and the initial values of its states, stored with each export as
gzip-compressed safetensors (``parity/<component>.safetensors.gz``; caches are
mostly empty slots, which compress well) so that the package on disk can
be re-checked at any time (``zoo verify --execute``).

Keys are ``<function>/<example>/<kind>/<name>`` with kind ``in``, ``out`` or
``state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ParityCase:
    function: str
    index: int
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    states: dict[str, Any] = field(default_factory=dict)


def save(path: Path, cases: list[ParityCase]) -> None:
    import gzip

    import numpy as np
    from safetensors.numpy import save as to_bytes

    data = {}
    for case in cases:
        for kind, values in (("in", case.inputs), ("out", case.outputs), ("state", case.states)):
            for name, value in values.items():
                data[f"{case.function}/{case.index}/{kind}/{name}"] = np.ascontiguousarray(value)
    Path(path).write_bytes(gzip.compress(to_bytes(data), compresslevel=1))


def load(path: Path) -> list[ParityCase]:
    import gzip

    from safetensors.numpy import load as from_bytes

    cases: dict[tuple[str, int], ParityCase] = {}
    for key, value in from_bytes(gzip.decompress(Path(path).read_bytes())).items():
        fn, idx, kind, name = key.split("/", 3)
        case = cases.setdefault((fn, int(idx)), ParityCase(fn, int(idx)))
        {"in": case.inputs, "out": case.outputs, "state": case.states}[kind][name] = value
    return [cases[k] for k in sorted(cases)]


def initial_states(module: Any, names: list[str]) -> dict[str, Any]:
    """The values the module's state buffers hold before the first call."""
    buffers = dict(module.named_buffers())
    missing = [n for n in names if n not in buffers]
    if missing:
        raise ValueError(f"state(s) {missing} are not buffers of the module; buffers: {sorted(buffers)}")
    return {n: buffers[n].detach().cpu().numpy().copy() for n in names}
