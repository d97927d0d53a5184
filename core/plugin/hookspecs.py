"""Every hook a zoo plugin can implement.

A plugin is a module (or object) exposed through the ``zoo.plugins`` entry-point
group whose functions are marked with :data:`zoo.core.hookimpl`. The built-in
plugins are registered through that same group.

A plugin declares its models with :func:`zoo_register_models`. The pipeline
hooks are then called *only for models the plugin registered*: the
core calls the owning plugin's implementation first and falls back to the core's
own default where one exists (``convert``). Every pipeline hook is
``firstresult``: the first non-``None`` answer wins, so a plugin overrides a
default simply by implementing the hook, and may return ``None`` to defer to it.

Heavy libraries (torch, coremltools, upstream model packages) must be imported
inside hook bodies, never at module import time.

What a hook may read of its ``variant`` is what its cached stage is keyed on
(core/export/stages.py): ``load_reference``, ``build_traceables``, ``export_constants``
and ``loop_parity`` its precision and options; ``convert`` also its deployment
target. None of them sees a compression (a compressed variant's hooks get the
variant it compresses: ``Variant.uncompressed``), and none may depend on the
variant's name, so every variant sharing those fields shares those stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime.backends import ComponentRuntime
    from .contract import LoopContract
    from .run import RunOptions, RunResult
    from .spec import ModelSpec, Variant, WeightsSource
    from .traceable import LoopCase, Reference, Traceable

PROJECT = "zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_register_models() -> "list[ModelSpec]":
    """Declare the models this plugin exports.

    Return a list of :class:`zoo.core.ModelSpec`: name, variants and
    default variant, the components (CoreML packages) an export produces and
    the validation tolerances. Called once per process; must be cheap and must
    not import torch.
    """
    raise NotImplementedError  # a specification: pluggy calls the plugins' implementations, never this


@hookspec(firstresult=True)
def load_reference(model: "ModelSpec", variant: "Variant", weights: "WeightsSource") -> "Reference | None":
    """Load the upstream model that the export must reproduce.

    ``weights`` says where the weights come from: the hub (pinned revision),
    a local path laid out like the hub repository, or ``random(seed)`` — the
    real architecture with seeded random weights, with no network access.
    Return a :class:`zoo.core.Reference` carrying the model and the sha256
    of every weights file read.
    """


@hookspec(firstresult=True)
def build_traceables(
    model: "ModelSpec", variant: "Variant", reference: "Reference"
) -> "Mapping[str, Traceable | Mapping[str, Traceable]] | None":
    """Build the traceable modules for every component of ``model``.

    Return ``{component: Traceable}`` for single-function packages, or
    ``{component: {function: Traceable}}`` for multifunction packages (the
    functions are converted separately and saved in one package sharing their
    weights). Each Traceable carries example inputs and a ``reference``
    callable computing the same outputs with the upstream model; the core
    checks their parity before converting.
    """


@hookspec(firstresult=True)
def convert(
    model: "ModelSpec", variant: "Variant", component: str, functions: "Mapping[str, Traceable]", out_path: Path
) -> "Path | None":
    """Convert one component to a CoreML package saved at ``out_path``.

    The core's default traces each function with ``torch.jit.trace``, converts
    it with ``coremltools.convert`` at the variant's precision and deployment
    target, and saves the package (a multifunction package when there are
    several functions). Implement this only to do something else; return the
    path of the saved package.
    """


@hookspec(firstresult=True)
def export_constants(
    model: "ModelSpec", variant: "Variant", reference: "Reference", out_dir: Path
) -> "Mapping[str, Path] | None":
    """Write the constants the run loop needs next to the packages.

    Write files (safetensors, tokenizer files — never pickles) into
    ``out_dir`` and return ``{name: path}``. The core hashes and registers
    them.
    """


@hookspec(firstresult=True)
def run_loop(model: "ModelSpec", runtime: "ComponentRuntime", text: str, options: "RunOptions") -> "RunResult | None":
    """Synthesise ``text`` by driving the components through ``runtime``.

    ``runtime(component, inputs, function="main")`` executes one component on
    numpy inputs with the selected backend (torch traceables, the MIL
    interpreter over the saved packages, or CoreML on macOS) and counts the
    calls; ``runtime.constants`` maps constant names to files. The loop itself
    must be numpy-only so that it mirrors what an app does.
    """


@hookspec(firstresult=True)
def loop_parity(
    model: "ModelSpec", variant: "Variant", reference: "Reference", runtime: "ComponentRuntime"
) -> "list[LoopCase] | None":
    """Optional: whole utterances of the run loop against the upstream model's own generation.

    ``runtime`` runs the traceables in torch (with the exported constants). Run
    the plugin's loop on it and the upstream model end to end on the same inputs
    and the same noise, and return :class:`zoo.core.LoopCase` items (audio
    pairs with their tolerance). The core judges them at the ``reference`` level
    and records them in the registry as components ``loop:<name>``; a failure
    stops the export like any parity failure.
    """


@hookspec(firstresult=True)
def list_voices(model: "ModelSpec", constants: "Mapping[str, Path]") -> "list[str] | None":
    """Optional: the voice names an export offers, read from its constants (cheap: no model
    is loaded). ``zoo run --voice`` is checked against them before anything loads, and
    ``zoo info`` lists them. None: the model has no named voices.
    """


@hookspec(firstresult=True)
def loop_contract(model: "ModelSpec", constants: "Mapping[str, Path]") -> "LoopContract | None":
    """Optional: the run loop as data (:class:`zoo.core.LoopContract`), built from an export's
    constants: what a native app must implement around the packages. ``zoo publish`` writes it into
    the manifest and the model card; the tests run the loop on a recording runtime and check its log
    against it, so it cannot drift from ``run_loop``.
    """


def hook_names() -> list[str]:
    return [name for name, value in globals().items() if hasattr(value, PROJECT + "_spec")]
