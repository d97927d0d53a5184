"""Plugin discovery and hook dispatch.

Plugins come from the ``zoo.plugins`` entry-point group — the built-in ones
too. pluggy registers them, checks their hook implementations against the
specifications and asks each for its models; a pipeline hook for a model is
then one direct call of the owning plugin's implementation (with the arguments
it declares), then the core's default when that gives None (``PluginHost.call``).
A plugin that fails to import, registers a misspelt hook, or raises while
declaring its models is recorded as a :class:`PluginInfo` with an ``error`` and
left out; the others keep working. ``strict=True`` turns any such failure into
a :class:`PluginLoadError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import pluggy

from ..plugin import hookspecs
from ..plugin.errors import UsageError
from ..plugin.skeleton import ModelPlugin
from ..plugin.spec import ModelSpec
from . import defaults

ENTRY_POINT_GROUP = "zoo.plugins"
PIPELINE_HOOKS = (
    "load_reference",
    "build_traceables",
    "convert",
    "export_constants",
    "run_loop",
    "loop_parity",
    "list_voices",
    "loop_contract",
)
#: pipeline hooks a plugin may leave out
OPTIONAL_HOOKS = ("loop_parity", "list_voices", "loop_contract")


class PluginLoadError(RuntimeError):
    """Raised in strict mode when a plugin could not be loaded."""


class HookError(RuntimeError):
    """A plugin's hook raised; carries the plugin and hook names."""

    def __init__(self, plugin: str, hook: str, error: BaseException):
        super().__init__(f"plugin {plugin!r} failed in {hook}: {type(error).__name__}: {error}")
        self.plugin = plugin
        self.hook = hook
        self.error = error


class UnknownModelError(KeyError):
    def __init__(self, name: str, known: Iterable[str]):
        import difflib

        self.name = name
        self.known = sorted(known)
        self.suggestion = next(iter(difflib.get_close_matches(name, self.known, n=1)), None)
        super().__init__(name)

    def __str__(self) -> str:
        msg = f"unknown model {self.name!r}; known models: {', '.join(self.known) or '(none)'}"
        if self.suggestion:
            msg += f". Did you mean {self.suggestion!r}?"
        return msg


@dataclass
class PluginInfo:
    name: str
    version: str = "?"
    module: str = ""
    hooks: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    error: str | None = None
    source_digest: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def _source_digest(module: Any) -> str:
    """sha256 over a plugin's Python sources, so edited code invalidates caches."""
    from ..util.hashing import python_sources_sha256

    if not isinstance(module, ModuleType):  # an instance or class: the module that defines its class
        import sys

        cls = module if isinstance(module, type) else type(module)
        module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if not file:
        return ""
    path = Path(file)
    return python_sources_sha256(path.parent if path.name == "__init__.py" else path)


def _plugin_version(obj: Any, ep: metadata.EntryPoint | None) -> str:
    version = getattr(obj, "__version__", None)
    if version:
        return str(version)
    if ep is not None and ep.dist is not None:
        return ep.dist.version
    return "?"


class PluginHost:
    """Owns the pluggy manager, the loaded plugins and the models they declare."""

    def __init__(self, strict: bool = False, entry_points: Iterable[metadata.EntryPoint] | None = None):
        self.strict = strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(defaults, name=defaults.NAME)
        self.plugins: dict[str, PluginInfo] = {}
        self.models: dict[str, ModelSpec] = {}
        self._objects: dict[str, Any] = {}
        eps = list(entry_points) if entry_points is not None else list(metadata.entry_points(group=ENTRY_POINT_GROUP))
        for ep in sorted(eps, key=lambda e: e.name):
            self._load_entry_point(ep)
        self.pm.check_pending()
        if strict and self.failures:
            raise PluginLoadError("; ".join(f"{p.name}: {p.error}" for p in self.failures))

    # -- loading -----------------------------------------------------------------
    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if not p.ok]

    def _fail(self, info: PluginInfo, message: str) -> None:
        info.error = message
        if self.pm.is_registered(self._objects.get(info.name)):
            self.pm.unregister(self._objects[info.name])
        self._objects.pop(info.name, None)

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        info = PluginInfo(name=ep.name, module=ep.value)
        if ep.name in self.plugins:
            self.plugins[ep.name + f"@{ep.value}"] = replace(info, error=f"duplicate plugin name {ep.name!r}")
            return
        self.plugins[ep.name] = info
        try:
            obj = ep.load()
        except BaseException as exc:  # noqa: BLE001 - a plugin must not take zoo down
            if isinstance(exc, KeyboardInterrupt):
                raise
            info.error = f"import failed: {type(exc).__name__}: {exc}"
            return
        info.version = _plugin_version(obj, ep)
        self.register(obj, info)

    def register(self, obj: Any, info: PluginInfo | None = None) -> PluginInfo:
        """Register a plugin object (module or instance) directly."""
        if info is None:
            name = getattr(obj, "__name__", type(obj).__name__)
            info = PluginInfo(name=name, module=name, version=_plugin_version(obj, None))
            self.plugins[name] = info
        try:
            self.pm.register(obj, name=info.name)
        except Exception as exc:  # pluggy validates hook signatures here
            info.error = f"invalid plugin: {exc}"
            return info
        self._objects[info.name] = obj
        info.source_digest = _source_digest(obj)
        callers = self.pm.get_hookcallers(obj) or []
        unknown = [hc.name for hc in callers if not hc.has_spec()]
        if unknown:
            known = hookspecs.hook_names()
            import difflib

            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, known, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            self._fail(info, "unknown hook " + ", ".join(hints))
            return info
        info.hooks = sorted(hc.name for hc in callers)
        problems = obj.problems() if isinstance(obj, ModelPlugin) else []
        if problems:  # a misnamed role function is a load error now, never a surprise mid-export
            self._fail(info, "; ".join(problems))
            return info
        if "zoo_register_models" not in info.hooks:
            return info
        try:
            specs = self._only(obj, "zoo_register_models")() or []
            specs = [s for group in specs for s in (group if isinstance(group, (list, tuple)) else [group])]
            for spec in specs:
                if not isinstance(spec, ModelSpec):
                    raise TypeError(f"zoo_register_models returned {type(spec).__name__}, expected ModelSpec")
                if spec.name in self.models:
                    raise ValueError(
                        f"model {spec.name!r} is already registered by plugin {self.models[spec.name].plugin!r}"
                    )
        except Exception as exc:  # noqa: BLE001
            self._fail(info, f"zoo_register_models raised {type(exc).__name__}: {exc}")
            return info
        for spec in specs:
            self.models[spec.name] = replace(spec, plugin=info.name)
            info.models.append(spec.name)
        return info

    def _only(self, obj: Any, hook: str, with_defaults: bool = False) -> Any:
        keep = {id(obj)} | ({id(defaults)} if with_defaults else set())
        others = [p for p in self.pm.get_plugins() if id(p) not in keep]
        return self.pm.subset_hook_caller(hook, remove_plugins=others)

    # -- dispatch ----------------------------------------------------------------
    def model(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise UnknownModelError(name, self.models)
        return self.models[name]

    def plugin_info(self, model: ModelSpec) -> PluginInfo:
        return self.plugins[model.plugin]

    def implementation(self, model: ModelSpec) -> Any:
        """The registered object (module or ``ModelPlugin`` instance) of ``model``'s plugin."""
        return self._objects[model.plugin]

    def _implementations(self, plugin: str, hook: str) -> list[Any]:
        """``hook``'s implementations that may answer for a model of ``plugin``: the plugin's own, then the
        core's default (pluggy registered and validated them; nothing else is consulted)."""
        owners = (self._objects[plugin], defaults)
        found = {id(impl.plugin): impl for impl in getattr(self.pm.hook, hook).get_hookimpls()}
        return [found[id(owner)] for owner in owners if id(owner) in found]

    def call(self, model: ModelSpec, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on the plugin that owns ``model``, directly (one hop: its implementation with the
        arguments it declares), then the core's default when the plugin's gives None."""
        if hook not in PIPELINE_HOOKS:
            raise ValueError(f"not a pipeline hook: {hook}")
        arguments = {"model": model, **kwargs}
        result = None
        try:
            for impl in self._implementations(model.plugin, hook):
                result = impl.function(**{name: arguments[name] for name in impl.argnames})
                if result is not None:
                    break
        except (KeyboardInterrupt, UsageError):
            raise  # UsageError: the plugin refuses the user's input (zoo exits 2 with its message), not a failure
        except Exception as exc:
            raise HookError(model.plugin, hook, exc) from exc
        if result is None and hook not in OPTIONAL_HOOKS:
            raise HookError(
                model.plugin,
                hook,
                NotImplementedError(f"no implementation of {hook} answered for model {model.name!r}"),
            )
        return result
