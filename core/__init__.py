"""zoo core: hooks, export pipeline, registry and CLI.

What a plugin needs is importable from here (and its helpers from ``zoo.core.kit``)::

    from zoo.core import ModelPlugin, Record, ModelSpec, Variant, ComponentSpec, Tolerance, Traceable, TensorSpec

(``ModelPlugin``: the skeleton every model plugin derives from, see ``skeleton.py``;
``hookimpl`` marks a hook implementation for anything the skeleton does not cover.)

Nothing imported by this module pulls in torch or coremltools.
"""

from .plugin.contract import (
    Call,
    Feed,
    FrontEnd,
    LoadStates,
    LoopContract,
    Repeat,
    ResetStates,
    Use,
    Voices,
)
from .plugin.errors import UsageError
from .plugin.hookspecs import hookimpl
from .plugin.records import Record, RecordError
from .plugin.run import RunOptions, RunResult, RunSetting, Runtime
from .plugin.skeleton import ModelPlugin
from .plugin.spec import (
    Checkpoint,
    ComponentSpec,
    CompressedLoop,
    ModelSpec,
    Tolerance,
    Variant,
    WeightsSource,
    standard_variants,
    with_compressed,
)
from .plugin.timestamps import Timing
from .plugin.traceable import LoopCase, Reference, StateSpec, TensorSpec, Traceable
from .validation.metrics import spectral_distance  # no numpy on import: it is imported when called

__all__ = [
    "hookimpl",
    "ModelPlugin",
    "Record",
    "RecordError",
    "UsageError",
    "Checkpoint",
    "ComponentSpec",
    "LoopCase",
    "ModelSpec",
    "Reference",
    "RunOptions",
    "CompressedLoop",
    "RunResult",
    "RunSetting",
    "Runtime",
    "StateSpec",
    "TensorSpec",
    "Timing",
    "Tolerance",
    "Traceable",
    "Variant",
    "WeightsSource",
    "standard_variants",
    "with_compressed",
    "spectral_distance",
    # the loop contract (a plugin's contract.py)
    "LoopContract",
    "Call",
    "Feed",
    "Use",
    "Repeat",
    "ResetStates",
    "LoadStates",
    "FrontEnd",
    "Voices",
]
