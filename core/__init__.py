"""zoo core: hooks, export pipeline, registry and CLI.

What a plugin needs is importable from here::

    from zoo.core import hookimpl, ModelSpec, Variant, ComponentSpec, Tolerance, Traceable, TensorSpec

Nothing imported by this module pulls in torch or coremltools.
"""

from .hookspecs import hookimpl
from .spec import (
    ComponentSpec,
    LoopCase,
    ModelSpec,
    Reference,
    RunOptions,
    RunResult,
    StateSpec,
    TensorSpec,
    Tolerance,
    Traceable,
    Variant,
    WeightsSource,
)

__all__ = [
    "hookimpl",
    "ComponentSpec",
    "LoopCase",
    "ModelSpec",
    "Reference",
    "RunOptions",
    "RunResult",
    "StateSpec",
    "TensorSpec",
    "Tolerance",
    "Traceable",
    "Variant",
    "WeightsSource",
]
