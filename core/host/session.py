"""A model session: one model, variant and weights, and everything built from them.

reference (``load_reference``) → traceables (``build_traceables``) → constants
(``export_constants``) → a torch runtime the plugin's run loop can drive. Each
is built at most once per session. The export pipeline, ``zoo run --backend
torch``, the benchmarks and the tests all go through here, so the hook sequence
and its checks (declared components and functions, constants inside their
directory, the hub-default-weights rule) are written once.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..plugin.spec import ModelSpec, Variant, WeightsSource
from ..plugin.traceable import Reference, Traceable
from .plugins import PluginHost

#: ``stage(name)`` wraps each hook call; it yields a dict whose "detail" the session fills
#: (the pipeline reports stages with it; the default does nothing)
StageHook = Callable[[str], AbstractContextManager]


def normalise_functions(value: Any) -> dict[str, Traceable]:
    """``build_traceables`` may give a Traceable or ``{function: Traceable}`` per component."""
    if isinstance(value, Traceable):
        return {"main": value}
    if isinstance(value, Mapping) and value and all(isinstance(v, Traceable) for v in value.values()):
        return dict(value)
    raise TypeError(f"build_traceables must give a Traceable or {{function: Traceable}}, got {type(value).__name__}")


def default_weights(model: ModelSpec, variant: Variant | None = None) -> WeightsSource:
    """The pinned hub revision (of the variant's checkpoint, if the model has checkpoints): the
    weights used when none are given."""
    repo, revision = model.hub_repo, model.revision
    if variant is not None and variant.checkpoint and model.checkpoints:
        checkpoint = model.checkpoint(variant.checkpoint)
        repo, revision = checkpoint.hub_repo or repo, checkpoint.revision or revision
    if not (repo and revision):
        raise ValueError(f"model {model.name!r} has no hub repository; pass --weights PATH or --random-weights")
    return WeightsSource.hub(repo, revision)


def checkpoint_name(model: ModelSpec, checkpoint: str | None, fallback: str | None = None) -> str | None:
    """The checkpoint ``checkpoint`` names (else ``fallback``, else the model's default), checked to
    exist; None for a model without checkpoints. ValueError names what is wrong: an empty name,
    --checkpoint on a model without checkpoints, an unknown name (with the closest one)."""
    if checkpoint is not None and not checkpoint.strip():
        raise ValueError(
            f"--checkpoint is empty; give a checkpoint name of model {model.name!r} or leave the option out"
        )
    if not model.checkpoints:
        if checkpoint:
            raise ValueError(
                f"model {model.name!r} has no checkpoints (one set of weights); drop --checkpoint {checkpoint}"
            )
        return None
    name = checkpoint or fallback or model.default_checkpoint
    if name not in model.checkpoints:
        import difflib

        close = difflib.get_close_matches(name, list(model.checkpoints), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"model {model.name!r} has no checkpoint {name!r}{hint} (checkpoints: {', '.join(model.checkpoints)})"
        )
    return name


def resolve_variant(model: ModelSpec, variant: str | Variant | None, checkpoint: str | None = None) -> Variant:
    """The named variant (default: the model's) of ``checkpoint`` (default: the variant's own, else
    the model's default checkpoint). ValueError names what is unknown and lists what exists, or
    why the checkpoint cannot be exported."""
    if not isinstance(variant, Variant):
        try:
            variant = model.variant(variant)
        except KeyError:
            raise ValueError(
                f"model {model.name!r} has no variant {variant!r}; variants: {', '.join(model.variants)}"
            ) from None
    name = checkpoint_name(model, checkpoint, variant.checkpoint)
    if name is None:
        return variant
    if model.checkpoints[name].unsupported:
        raise ValueError(
            f"model {model.name!r}: checkpoint {name!r} cannot be exported: {model.checkpoints[name].unsupported}"
        )
    return variant.for_checkpoint(name)


@dataclass(frozen=True)
class Target:
    """What one export or run is of, resolved once and passed: the model's spec, the variant (its
    checkpoint resolved), the weights, and the variant the torch-side hooks see (``uncompressed``)."""

    model: ModelSpec
    variant: Variant
    weights: WeightsSource
    uncompressed: Variant = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "uncompressed", self.variant.uncompressed())

    @classmethod
    def resolve(
        cls,
        host: PluginHost,
        model: str | ModelSpec,
        variant: str | Variant | None = None,
        weights: WeightsSource | None = None,
        checkpoint: str | None = None,
    ) -> Target:
        """Usage errors (unknown model, variant or checkpoint) raise here, before anything runs."""
        spec = model if isinstance(model, ModelSpec) else host.model(model)
        resolved = resolve_variant(spec, variant, checkpoint)
        return cls(spec, resolved, weights if weights is not None else default_weights(spec, resolved))


def _no_stage(name: str) -> AbstractContextManager:
    return nullcontext({})


class ModelSession:
    """``model`` is a resolved :class:`Target` (the pipeline's and ``zoo run``'s), or a model name that
    ``variant``, ``weights`` and ``checkpoint`` resolve here (tests, benchmarks, plugin authors)."""

    def __init__(
        self,
        host: PluginHost,
        model: str | Target,
        variant: str | Variant | None = None,
        weights: WeightsSource | None = None,
        stage: StageHook | None = None,
        checkpoint: str | None = None,
    ):
        self.host = host
        self.target = model if isinstance(model, Target) else Target.resolve(host, model, variant, weights, checkpoint)
        self.model: ModelSpec = self.target.model
        self.variant: Variant = self.target.variant
        self.weights: WeightsSource = self.target.weights
        self._stage = stage or _no_stage
        self._reference: Reference | None = None
        self._traceables: dict[str, dict[str, Traceable]] | None = None
        self._files: dict[str, str] = {}  # the reference's weights files, kept after release()

    def call(self, hook: str, **kwargs: Any) -> Any:
        return self.host.call(self.model, hook, **kwargs)

    def reference(self) -> Reference:
        if self._reference is None:
            with self._stage("load_reference") as info:
                ref = self.call("load_reference", variant=self.target.uncompressed, weights=self.weights)
                if not isinstance(ref, Reference):
                    raise TypeError(f"load_reference must return zoo.core.Reference, got {type(ref).__name__}")
                self._reference = ref
                info["detail"] = self.weights.describe()
        return self._reference

    def loaded_reference_files(self) -> dict[str, str]:
        """The weights files the reference was loaded from (name -> sha256), if it was loaded."""
        if self._reference is not None and self._reference.files:
            return dict(self._reference.files)
        return dict(self._files)

    def release(self) -> None:
        """Let the reference and the traceables go (the export's stages after conversion run the
        saved packages, not torch): their memory is returned before the package levels load the
        packages. Asked for again, they are built again."""
        import gc

        if self._reference is not None:
            self._files = dict(self._reference.files or {})
        self._reference = self._traceables = None
        gc.collect()  # torch modules and traced graphs hold reference cycles
        from ..util.memory import return_freed_memory

        return_freed_memory()

    def traceables(self, fresh: bool = False) -> dict[str, dict[str, Traceable]]:
        """``{component: {function: Traceable}}``, checked against the model's declared components
        (``fresh``: built again, e.g. after the reference's weights were changed in place)."""
        if self._traceables is None or fresh:
            reference = self.reference()
            with self._stage("build_traceables") as info:
                raw = self.call("build_traceables", variant=self.target.uncompressed, reference=reference)
                built = {name: normalise_functions(value) for name, value in dict(raw).items()}
                for comp in self.model.components:
                    if comp.name not in built:
                        raise ValueError(f"build_traceables gave no component {comp.name!r}")
                    if tuple(built[comp.name]) != comp.functions:
                        raise ValueError(
                            f"component {comp.name!r}: functions {tuple(built[comp.name])} differ from declared "
                            f"{comp.functions}"
                        )
                extra = set(built) - {c.name for c in self.model.components}
                if extra:
                    raise ValueError(f"build_traceables gave undeclared components {sorted(extra)}")
                self._traceables = built
                info["detail"] = ", ".join(built)
        return self._traceables

    def constants(self, out_dir: Path) -> dict[str, Path]:
        """``export_constants`` into ``out_dir``: ``{name: file}``, each an existing file inside it."""
        out_dir = Path(out_dir)
        files = (
            self.call("export_constants", variant=self.target.uncompressed, reference=self.reference(), out_dir=out_dir)
            or {}
        )
        root = out_dir.resolve()
        checked: dict[str, Path] = {}
        for name, path in dict(files).items():
            path = Path(path)
            path = (path if path.is_absolute() else out_dir / path).resolve()
            if root not in path.parents or not path.is_file():
                raise ValueError(f"constant {name!r}: {path} is not a file inside the constants directory {out_dir}")
            checked[name] = path
        return checked

    def torch_runtime(self, workdir: Path, constants: Mapping[str, Path] | None = None) -> Any:
        """A TorchRuntime over the traceables, with constants written into ``workdir`` (or given)."""
        from ..runtime.backends import TorchRuntime

        return TorchRuntime(self.traceables(), constants if constants is not None else self.constants(workdir))

    def loop_parity(self, runtime: Any) -> list[Any]:
        """The plugin's whole-loop parity cases (the optional ``loop_parity`` hook)."""
        return (
            self.call("loop_parity", variant=self.target.uncompressed, reference=self.reference(), runtime=runtime)
            or []
        )
