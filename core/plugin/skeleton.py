"""The plugin skeleton: one folder layout, one base class, no per-hook boilerplate.

A model plugin is a package laid out like this (``zoo new-plugin NAME`` writes one)::

    <plugin>/
      __init__.py     the ModelSpec(s) and ``plugin = <Class>()``, the object the entry point names
      options.py      typed variant options and the run config (frozen ``zoo.core.Record``s)
      reference.py    load(weights, options) -> Reference           (load_reference)
      traceables.py   build(upstream, options, precision) -> {component: Traceable(s)}
      constants.py    export(upstream, options, precision, out_dir) -> {name: file}
      loop.py         run(runtime, text, run_options) -> RunResult  (run_loop)
      parity.py       cases(runtime, upstream, options) -> [LoopCase] (loop_parity; optional)
      contract.py     contract(constants) -> LoopContract             (loop_contract; optional)
      <layers>.py     the model's own torch layers, text processing, upstream config

:class:`ModelPlugin` implements every pipeline hook by calling the function of
the same role in the plugin's own modules, imported when the hook is first
called (so ``zoo list`` never imports torch). ``upstream`` is
``Reference.model``; ``options`` is the variant's options parsed into the
plugin's ``options_type``. A plugin overrides a method to do something else
(e.g. ``convert``: the core's default runs unless a plugin implements it).
"""

from __future__ import annotations

import ast
import inspect
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .contract import LoopContract
from .hookspecs import hookimpl
from .run import RunOptions, RunResult, Runtime
from .spec import ModelSpec, Variant, WeightsSource
from .traceable import Reference


# -- the role modules' functions, declared (checked when the plugin loads, without importing them)
class ReferenceRole(Protocol):
    def load(self, weights: WeightsSource, options: Any) -> Reference: ...


class TraceablesRole(Protocol):
    def build(self, upstream: Any, options: Any, precision: str) -> Any: ...


class ConstantsRole(Protocol):
    def export(self, upstream: Any, options: Any, precision: str, out_dir: Path) -> Any: ...


class LoopRole(Protocol):
    def run(self, runtime: Runtime, text: str, options: RunOptions) -> RunResult: ...


class ParityRole(Protocol):
    def cases(self, runtime: Runtime, upstream: Any, options: Any) -> list[Any]: ...


class ContractRole(Protocol):
    def contract(self, constants: Any) -> LoopContract: ...


#: role module -> (its protocol, whether a plugin must have it)
ROLES: dict[str, tuple[type, bool]] = {
    "reference": (ReferenceRole, True),
    "traceables": (TraceablesRole, True),
    "constants": (ConstantsRole, True),
    "loop": (LoopRole, True),
    "parity": (ParityRole, False),
    "contract": (ContractRole, False),
}


def role_problems(package: str) -> list[str]:
    """What the plugin ``package``'s role modules lack, read from their source (nothing imported:
    ``zoo list`` stays free of torch): each role's module must exist and define each function its
    protocol declares, taking at least the protocol's parameters positionally."""
    problems = []
    for role, (protocol, required) in ROLES.items():
        try:
            spec = find_spec(f"{package}.{role}")
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            if required:
                problems.append(f"no module {package}.{role}")
            continue
        try:
            tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError) as exc:
            problems.append(f"{package}.{role} cannot be read: {type(exc).__name__}: {exc}")
            continue
        defined = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        bound = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        bound |= {
            (a.asname or a.name) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names
        }
        for name, member in inspect.getmembers(protocol, inspect.isfunction):
            if name.startswith("_"):
                continue
            wanted = [p for p in inspect.signature(member).parameters if p != "self"]
            shown = f"{package}.{role}.{name}({', '.join(wanted)})"
            if name in defined:
                args = defined[name].args
                positional = len(args.posonlyargs) + len(args.args)
                if positional < len(wanted) and args.vararg is None:
                    problems.append(f"{shown} takes {positional} positional parameter(s), not {len(wanted)}")
            elif name not in bound:
                problems.append(f"{package}.{role} defines no function {name}: expected {shown}")
    return problems


class ModelPlugin:
    #: the plugin's package (``__name__`` of its ``__init__.py``)
    package: ClassVar[str] = ""
    #: its version, shown by ``zoo list`` and recorded in every export
    __version__: ClassVar[str] = "0.0.0"
    #: a ``zoo.core.Record`` dataclass the variant options are parsed into (None: a plain dict)
    options_type: ClassVar[Any] = None

    def models(self) -> list[ModelSpec]:
        raise NotImplementedError

    def problems(self) -> list[str]:
        """What the role modules lack (``role_problems``): reported when the plugin loads."""
        return role_problems(self.package) if self.package else ["ModelPlugin.package is not set"]

    def module(self, role: str) -> Any:
        """The plugin's module for ``role`` (reference, traceables, constants, loop, parity)."""
        return import_module(f"{self.package}.{role}")

    def options(self, variant: Variant) -> Any:
        if self.options_type is None:
            return dict(variant.options)
        return self.options_type.from_mapping(variant.options, f"variant {variant.name!r} options")

    # -- the hooks -----------------------------------------------------------------------
    @hookimpl
    def zoo_register_models(self) -> list[ModelSpec]:
        return self.models()

    @hookimpl
    def load_reference(self, model: ModelSpec, variant: Variant, weights: Any) -> Any:
        return self.module("reference").load(weights, self.options(variant))

    @hookimpl
    def build_traceables(self, model: ModelSpec, variant: Variant, reference: Any) -> Any:
        return self.module("traceables").build(reference.model, self.options(variant), variant.precision)

    @hookimpl
    def export_constants(self, model: ModelSpec, variant: Variant, reference: Any, out_dir: Path) -> Any:
        return self.module("constants").export(reference.model, self.options(variant), variant.precision, Path(out_dir))

    @hookimpl
    def run_loop(self, model: ModelSpec, runtime: Any, text: str, options: Any) -> Any:
        # --set typed once, by the model's RunSettings, before the loop sees it (options.values)
        return self.module("loop").run(runtime, text, options.resolved(model.run_settings, model.name))

    @hookimpl
    def list_voices(self, model: ModelSpec, constants: Any) -> Any:
        voices = getattr(self.module("loop"), "voices", None)  # loop.voices(constants), when it names voices
        return voices(constants) if voices is not None else None

    @hookimpl
    def loop_contract(self, model: ModelSpec, constants: Any) -> Any:
        module = self._optional("contract")
        return module.contract(constants) if module is not None else None

    def _optional(self, role: str) -> Any:
        """The plugin's module for an optional ``role``, or None when it has none."""
        try:
            return self.module(role)
        except ModuleNotFoundError as exc:
            if exc.name != f"{self.package}.{role}":
                raise
            return None

    @hookimpl
    def loop_parity(self, model: ModelSpec, variant: Variant, reference: Any, runtime: Any) -> Any:
        parity = self._optional("parity")
        if parity is None:
            return None  # no whole-loop parity cases: the hook is optional
        return parity.cases(runtime, reference.model, self.options(variant))
