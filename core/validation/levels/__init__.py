"""Validation levels: one ordered registry, one file per level.

=============  ==============================================================  =========
level          what runs                                                       file
=============  ==============================================================  =========
``reference``  each traceable (torch) against the upstream model, in torch     reference.py
``mil``        the saved package, executed by zoo's MIL interpreter (any OS)   mil.py
``coreml``     the saved package, executed by the CoreML runtime (macOS)       coreml.py
=============  ==============================================================  =========

The reference level produces the parity data (inputs and expected outputs) that
every later level executes its package on. A *package level* module defines
``available() -> (ok, reason)`` and ``execute(component, package, parity_file,
tolerance, **options) -> list[Check]``; adding one is a new file and a line in
``REGISTRY`` (the pipeline, ``zoo verify`` and ``zoo info`` read the registry).
A level that cannot run is recorded as skipped with its reason, never as passed.

This module imports nothing heavy: the level modules are imported when used.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...plugin.names import LEVELS as NAMES

if TYPE_CHECKING:
    from ...plugin.spec import Tolerance
    from ..checks import Check


@dataclass(frozen=True)
class Level:
    name: str
    summary: str
    #: its verdict depends only on the package's bytes and the parity data, so the pipeline
    #: caches it as a stage keyed on the package digest (a hardware runtime is re-run instead)
    cached: bool = False

    def _module(self) -> Any:
        return import_module(f"{__name__}.{self.name}")

    def available(self) -> tuple[bool, str]:
        """(True, "") where this level can run on this machine, else (False, why not)."""
        return self._module().available()

    def execute(
        self, component: str, package: Path, parity_file: Path, tolerance: "Tolerance", **options: Any
    ) -> "list[Check]":
        """The package run on the parity inputs, judged by ``tolerance`` (package levels only)."""
        return self._module().execute(component, package, parity_file, tolerance, **options)


REGISTRY: tuple[Level, ...] = (
    Level("reference", "each traceable against upstream in torch: float64 exactness and calibrated fp32 bounds"),
    Level("mil", "the saved package executed by zoo's MIL interpreter (any OS)", cached=True),
    Level("coreml", "the saved package executed by the CoreML runtime (macOS only)"),
)
#: level names, lowest first (the contract's names: one level each, in that order)
LEVELS: tuple[str, ...] = tuple(level.name for level in REGISTRY)
assert LEVELS == NAMES, f"validation levels {LEVELS} differ from plugin.names.LEVELS {NAMES}"
#: the levels that execute a saved package, in order
PACKAGE_LEVELS: tuple[Level, ...] = REGISTRY[1:]


def level(name: str) -> Level:
    for candidate in REGISTRY:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown validation level {name!r}; levels: {', '.join(LEVELS)}")
