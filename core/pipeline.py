"""The export pipeline, the same for every plugin.

load_reference → build_traceables → parity against the reference → convert →
export_constants → validation levels (mil, coreml) → registry entry.

Everything is produced in work directories (the stage cache and a staging
directory) and the finished export is renamed into ``<out>/<id>`` under the
registry lock right before the registry entry is written. An export that fails
or is interrupted leaves neither a package in the output directory nor an entry
in the registry.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

from . import parity, validation
from .cache import StageCache
from .hashing import tree_sha256, tree_size
from .levels import LEVELS, PACKAGE_LEVELS, Level
from .plugins import PluginHost
from .registry import Registry, RegistryError
from .spec import ModelSpec, Reference, Traceable, Variant, WeightsSource, stable_hash
from .validation import Check

TOOLS = ("torch", "coremltools", "numpy")
PARITY_FILE = "parity.safetensors.gz"
CALIBRATION_FILE = "calibration.json"
PENDING_MARKER = ".zoo-pending.json"


def _pending(out_dir: Path) -> Iterator[tuple[Path, dict[str, Any] | None, str]]:
    """Every ``<out>/<dir>/.zoo-pending.json``: (export directory, its marker if well-formed, why not)."""
    if not out_dir.is_dir():
        return
    for marker in sorted(out_dir.glob(f"*/{PENDING_MARKER}")):
        directory = marker.parent
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError) as exc:
            yield directory, None, f"unreadable marker ({type(exc).__name__})"
            continue
        if not (isinstance(info, dict) and isinstance(info.get("id"), str) and type(info.get("pid")) is int and isinstance(info.get("registry"), str)):
            yield directory, None, "malformed marker (needs a string id, an integer pid and a registry path)"
        elif info["id"] != directory.name:
            yield directory, None, f"its marker names another export ({info['id']!r})"
        else:
            yield directory, info, ""


def _registered(info: dict[str, Any], registry: Registry) -> bool | None:
    """Is the marker's export in the registry it names, or in ``registry``? None: cannot tell."""
    ids: set[str] = set()
    for reg in {Path(info["registry"]), registry.path.resolve()}:
        try:
            ids.update(e["id"] for e in Registry(reg).exports())
        except (RegistryError, OSError):
            return None
    return info["id"] in ids


def remove_abandoned_exports(out_dir: Path, registry: Registry) -> tuple[list[Path], list[str]]:
    """Export directories moved into place by a process that died before registering them.

    Deleted only when zoo provably made them and nobody registered them: a well-formed marker
    naming the directory itself and a dead process, and the export in neither the registry the
    marker records nor this one. Everything else is left alone, with a warning when suspicious.
    Returns (removed directories, warnings)."""
    from .cache import _pid_alive

    removed: list[Path] = []
    warnings: list[str] = []
    for directory, info, problem in _pending(out_dir):
        if info is None:
            warnings.append(f"{directory}: {problem}; left alone")
            continue
        if _pid_alive(info["pid"]):
            continue  # still being registered
        registered = _registered(info, registry)
        if registered is None:
            warnings.append(f"{directory}: cannot read the registry {info['registry']} its marker names; left alone")
        elif registered:
            (directory / PENDING_MARKER).unlink(missing_ok=True)  # registered; the process died before tidying up
        else:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed, warnings


def orphaned_exports(registry: Registry) -> list[Path]:
    """Complete export directories no registry lists, left by a process killed between moving its
    export into place and registering it (next to this registry's exports, or in ./exports)."""
    from .cache import _pid_alive

    parents = {registry.export_dir(e).parent for e in registry.exports()} | {Path("exports")}
    found = []
    for parent in sorted(parents):
        for directory, info, _ in _pending(parent):
            if info is not None and not _pid_alive(info["pid"]) and _registered(info, registry) is False:
                found.append(directory)
    return found


def core_digest() -> str:
    """sha256 of zoo.core's own sources (computed once per process)."""
    global _CORE_DIGEST
    if _CORE_DIGEST is None:
        from .hashing import python_sources_sha256

        _CORE_DIGEST = python_sources_sha256(Path(__file__).parent)
    return _CORE_DIGEST


_CORE_DIGEST: str | None = None


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("zoo-tts",) + TOOLS:
        try:
            versions["zoo" if dist == "zoo-tts" else dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions["zoo" if dist == "zoo-tts" else dist] = "not installed"
    return versions


class ExportFailed(RuntimeError):
    def __init__(self, message: str, report: "ExportReport"):
        super().__init__(message)
        self.report = report


@dataclass
class StageResult:
    stage: str
    status: str  # done | cached | failed | skipped
    seconds: float = 0.0
    detail: str = ""


@dataclass
class ExportReport:
    model: str
    variant: str
    weights: str
    ok: bool = False
    export_id: str | None = None
    path: str | None = None
    level: str | None = None
    error: str | None = None
    stages: list[StageResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "id": self.export_id,
            "model": self.model,
            "variant": self.variant,
            "weights": self.weights,
            "path": self.path,
            "validation_level": self.level,
            "error": self.error,
            "stages": [s.__dict__ for s in self.stages],
            "validation": [c.record() for c in self.checks],
            "components": self.components,
            "warnings": self.warnings,
        }


class Reporter:
    """Receives stage progress; the CLI shows it with rich, tests ignore it."""

    def plan(self, stages: list[str]) -> None:
        pass

    def begin(self, stage: str) -> None:
        pass

    def end(self, result: StageResult) -> None:
        pass


def normalise_functions(value: Any) -> dict[str, Traceable]:
    if isinstance(value, Traceable):
        return {"main": value}
    if isinstance(value, Mapping) and value and all(isinstance(v, Traceable) for v in value.values()):
        return dict(value)
    raise TypeError(f"build_traceables must give a Traceable or {{function: Traceable}}, got {type(value).__name__}")


def weights_identity(weights: WeightsSource) -> dict[str, Any]:
    ident: dict[str, Any] = {"kind": weights.kind}
    if weights.kind == "random":
        ident["seed"] = weights.seed
    elif weights.kind == "hub":
        ident.update(repo=weights.repo, revision=weights.revision)
    else:
        path = Path(weights.path or "")
        if not path.exists():
            raise FileNotFoundError(f"weights path {path} does not exist")
        ident.update(path=str(path), sha256=tree_sha256(path))
    return ident


class Exporter:
    def __init__(
        self,
        host: PluginHost,
        model: str,
        variant: str | None = None,
        weights: WeightsSource | None = None,
        out_dir: str | Path = "exports",
        registry: Registry | None = None,
        cache: StageCache | None = None,
        force: bool = False,
        reporter: Reporter | None = None,
    ):
        self.host = host
        self.model: ModelSpec = host.model(model)
        try:
            self.variant: Variant = self.model.variant(variant)
        except KeyError:
            raise ValueError(f"model {model!r} has no variant {variant!r}; variants: {', '.join(self.model.variants)}") from None
        if weights is None:
            if not (self.model.hub_repo and self.model.revision):
                raise ValueError(f"model {model!r} has no hub repository; pass --weights PATH or --random-weights")
            weights = WeightsSource.hub(self.model.hub_repo, self.model.revision)
        self.weights = weights
        self.out_dir = Path(out_dir)
        self.registry = registry or Registry()
        self.cache = cache or StageCache()
        self.force = force
        self.reporter = reporter or Reporter()
        self.report = ExportReport(model=self.model.name, variant=self.variant.name, weights=weights.describe())
        self._reference: Reference | None = None
        self._traceables: dict[str, dict[str, Traceable]] | None = None

    # -- lazily computed inputs ----------------------------------------------------
    @contextmanager
    def _stage(self, name: str) -> Iterator[dict[str, Any]]:
        self.reporter.begin(name)
        start = time.perf_counter()
        info: dict[str, Any] = {"status": "done", "detail": ""}
        try:
            yield info
        except BaseException as exc:
            result = StageResult(name, "failed", time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
            self.report.stages.append(result)
            self.reporter.end(result)
            raise
        result = StageResult(name, info["status"], time.perf_counter() - start, info["detail"])
        self.report.stages.append(result)
        self.reporter.end(result)

    def reference(self) -> Reference:
        if self._reference is None:
            with self._stage("load_reference") as info:
                ref = self.host.call(self.model, "load_reference", variant=self.variant, weights=self.weights)
                if not isinstance(ref, Reference):
                    raise TypeError(f"load_reference must return zoo.core.Reference, got {type(ref).__name__}")
                self._reference = ref
                info["detail"] = self.weights.describe()
        return self._reference

    def traceables(self) -> dict[str, dict[str, Traceable]]:
        if self._traceables is None:
            reference = self.reference()
            with self._stage("build_traceables") as info:
                raw = self.host.call(self.model, "build_traceables", variant=self.variant, reference=reference)
                built = {name: normalise_functions(value) for name, value in dict(raw).items()}
                for comp in self.model.components:
                    if comp.name not in built:
                        raise ValueError(f"build_traceables gave no component {comp.name!r}")
                    if tuple(built[comp.name]) != comp.functions:
                        raise ValueError(f"component {comp.name!r}: functions {tuple(built[comp.name])} differ from declared {comp.functions}")
                extra = set(built) - {c.name for c in self.model.components}
                if extra:
                    raise ValueError(f"build_traceables gave undeclared components {sorted(extra)}")
                self._traceables = built
                info["detail"] = ", ".join(built)
        return self._traceables

    # -- stages --------------------------------------------------------------------
    def _key(self, stage: str, extra: Any = None) -> str:
        plugin = self.host.plugin_info(self.model)
        return stable_hash(
            {
                "stage": stage,
                "extra": extra,
                "model": self.model.name,
                "plugin": [plugin.name, plugin.version, plugin.source_digest],
                "core": core_digest(),  # a change to zoo.core (a kernel, the default convert) is a miss too
                "variant": self.variant.as_record(),
                "weights": self._weights_ident,
                "tools": self._tools,
                "components": [(c.name, c.functions) for c in self.model.components],
            }
        )

    def _cached_stage(self, stage: str, build: Any, checked: bool = False, extra: Any = None) -> Path:
        """Reuse a finished stage or build it; returns the stage directory. A ``checked`` stage
        (one that writes ``checks.json``) whose checks failed is shown as failed."""
        key = self._key(stage, extra)
        with self._stage(stage) as info:
            path = None if self.force else self.cache.get(key)
            if path is not None:
                info["status"] = "cached"
            else:
                if self.cache.last_rejection and not self.force:
                    self.report.warnings.append(f"{stage}: the cached stage was rebuilt: {self.cache.last_rejection}")
                    info["detail"] = f"rebuilt: the cached copy was rejected ({self.cache.last_rejection})"
                path, _ = self.cache.put(key, build, meta={"stage": stage, "model": self.model.name}, replace=self.force)
            if checked:
                failed = [Check(**r) for r in json.loads((path / "checks.json").read_text()) if r.get("status") == "failed"]
                if failed:
                    info["status"] = "failed"
                    info["detail"] = "; ".join(f"{c.component} {c.metric} {c.value:.3g} > {c.threshold:.3g}" if c.value is not None and c.threshold is not None else f"{c.component} {c.metric} {c.reason}" for c in failed)
            return path

    def _parity(self, component: str) -> tuple[list[Check], Path]:
        """The ``reference`` level of one component (levels/reference.py), with the parity data
        every later level executes the package on and the measurements its bounds derive from."""

        def build(tmp: Path) -> None:
            from .levels import reference

            result = reference.check_component(self.model, self.variant, component, self.reference().model, self.traceables()[component])
            parity.save(tmp / PARITY_FILE, result.cases)
            result.calibration.save(tmp / CALIBRATION_FILE)
            (tmp / "checks.json").write_text(json.dumps([c.record() for c in result.checks], indent=1))

        path = self._cached_stage(f"parity:{component}", build, checked=True)
        return [Check(**rec) for rec in json.loads((path / "checks.json").read_text())], path

    def _loop_parity(self, constants: dict[str, str]) -> list[Check]:
        """The plugin's whole-loop cases (optional hook), judged at the reference level."""

        def build(tmp: Path) -> None:
            from .runtime import TorchRuntime

            files = {name: self._constants_dir / rel for name, rel in constants.items()}
            runtime = TorchRuntime(self.traceables(), files)
            cases = self.host.call(self.model, "loop_parity", variant=self.variant, reference=self.reference(), runtime=runtime) or []
            checks = validation.loop_checks(cases)
            (tmp / "checks.json").write_text(json.dumps([c.record() for c in checks], indent=1))

        path = self._cached_stage("loop_parity", build, checked=True)
        return [Check(**rec) for rec in json.loads((path / "checks.json").read_text())]

    def _convert(self, component: str) -> Path:
        def build(tmp: Path) -> None:
            functions = self.traceables()[component]
            out = tmp / f"{component}.mlpackage"
            saved = Path(
                self.host.call(
                    self.model, "convert", variant=self.variant, component=component, functions=functions, out_path=out
                )
            )
            if saved.resolve() != out.resolve() or not saved.exists():
                raise RuntimeError(f"convert must save the package at {out}, got {saved}")

        return self._cached_stage(f"convert:{component}", build) / f"{component}.mlpackage"

    def _constants(self) -> dict[str, str]:
        def build(tmp: Path) -> None:
            files = self.host.call(self.model, "export_constants", variant=self.variant, reference=self.reference(), out_dir=tmp)
            names = {}
            for name, path in dict(files).items():
                path = Path(path).resolve()
                if tmp.resolve() not in path.parents or not path.exists():
                    raise ValueError(f"constant {name!r}: {path} is not a file inside the constants directory")
                names[name] = path.relative_to(tmp.resolve()).as_posix()
            (tmp / "constants.json").write_text(json.dumps(names, indent=1, sort_keys=True))

        path = self._cached_stage("constants", build)
        self._constants_dir = path
        return json.loads((path / "constants.json").read_text())

    def _execute_level(self, level: "Level", component: str, package: Path, parity_dir: Path) -> list[Check]:
        from .calibration import Calibration

        calibration = Calibration.load(parity_dir / CALIBRATION_FILE)
        tolerance, basis = calibration.resolve(self.model.tolerance(component, self.variant.precision, level.name), self.variant.precision)
        options = {"integer_outputs": self.model.component(component).integer_outputs, "basis": basis, "precision": self.variant.precision}
        parity_file = parity_dir / PARITY_FILE
        ok, reason = level.available()
        if not ok:
            return [validation.skipped(level.name, reason, component)]
        if level.cached:

            def build(tmp: Path) -> None:
                checks = level.execute(component, package, parity_file, tolerance, **options)
                (tmp / "checks.json").write_text(json.dumps([c.record() for c in checks], indent=1))

            # keyed on the package's bytes: a verdict is never reused for another package
            path = self._cached_stage(f"{level.name}:{component}", build, checked=True, extra={"package": self._package_digests[component]})
            return [Check(**rec) for rec in json.loads((path / "checks.json").read_text())]
        with self._stage(f"{level.name}:{component}"):
            return level.execute(component, package, parity_file, tolerance, **options)

    # -- the whole export ----------------------------------------------------------
    def run(self) -> ExportReport:
        report = self.report
        try:
            self._run()
        except ExportFailed:
            raise
        except Exception as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            raise ExportFailed(report.error, report) from exc
        return report

    def _run(self) -> None:
        report = self.report
        comps = [c.name for c in self.model.components]
        self.reporter.plan(
            [f"parity:{c}" for c in comps] + ["constants", "loop_parity"] + [f"convert:{c}" for c in comps]
            + [f"{level.name}:{c}" for level in PACKAGE_LEVELS if level.cached for c in comps] + ["register"]
        )
        self._tools = tool_versions()
        self._weights_ident = weights_identity(self.weights)
        _, warnings = remove_abandoned_exports(self.out_dir, self.registry)
        report.warnings.extend(warnings)

        checks: list[Check] = []
        parity_dirs: dict[str, Path] = {}
        for comp in comps:
            comp_checks, parity_dirs[comp] = self._parity(comp)
            checks.extend(comp_checks)
        constants = self._constants()
        checks.extend(self._loop_parity(constants))
        report.checks = checks
        if validation.level_failed(checks, "reference"):
            failed = sorted({c.component for c in checks if c.status == "failed"})
            raise ExportFailed(f"reference parity failed for {', '.join(failed)}; nothing was exported", report)

        packages = {comp: self._convert(comp) for comp in comps}
        # hashed once the convert stage passed its own check: the mil verdict is keyed on it and the
        # copy placed in the export must match it
        self._package_digests = {comp: tree_sha256(path) for comp, path in packages.items()}

        for level in PACKAGE_LEVELS:
            for comp in comps:
                checks.extend(self._execute_level(level, comp, packages[comp], parity_dirs[comp]))
        report.checks = checks
        level = validation.level_reached(checks)
        required = self.model.required_level
        if level is None or LEVELS.index(level) < LEVELS.index(required):
            raise ExportFailed(f"required validation level {required!r} was not reached (reached: {level})", report)
        report.level = level

        with self._stage("register") as info:
            self._assemble_and_register(packages, constants, parity_dirs, checks)
            info["detail"] = report.export_id or ""
        report.ok = True

    def _assemble_and_register(self, packages: dict[str, Path], constants: dict[str, str], parity_dirs: dict[str, Path], checks: list[Check]) -> None:
        report = self.report
        stamp = datetime.now(timezone.utc)
        export_id = f"{self.model.name}-{self.variant.name}-{stamp:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        staging = self.cache.staging_dir(self.out_dir, export_id)
        final = self.out_dir / export_id
        try:
            components = []
            for comp in self.model.components:
                dest = staging / f"{comp.name}.mlpackage"
                shutil.copytree(packages[comp.name], dest)
                digest = tree_sha256(dest)
                if digest != self._package_digests[comp.name]:
                    raise RuntimeError(f"{comp.name}: the copy placed in the export does not match the validated package (sha256 {digest[:16]}…)")
                components.append(
                    {"name": comp.name, "path": dest.name, "functions": list(comp.functions), "sha256": digest, "bytes": tree_size(dest)}
                )
            const_records = []
            for name, rel in sorted(constants.items()):
                dest = staging / "constants" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self._constants_dir / rel, dest)
                const_records.append({"name": name, "path": f"constants/{rel}", "sha256": tree_sha256(dest), "bytes": dest.stat().st_size})
            (staging / "parity").mkdir()
            parity_records = []
            for comp, pdir in parity_dirs.items():
                dest = staging / "parity" / f"{comp}.safetensors.gz"
                shutil.copy2(pdir / PARITY_FILE, dest)
                parity_records.append({"name": comp, "path": f"parity/{dest.name}", "sha256": tree_sha256(dest), "bytes": dest.stat().st_size})
            plugin = self.host.plugin_info(self.model)
            weights = {"source": self.weights.describe(), **self._weights_ident}
            if self._reference is not None and self._reference.files:
                weights["files"] = dict(self._reference.files)
            entry = {
                "id": export_id,
                "model": self.model.name,
                "status": "valid",
                "validation_level": report.level,
                "created_at": stamp.isoformat(timespec="seconds"),
                "path": self.registry.relative(final.resolve()),
                "plugin": {"name": plugin.name, "version": plugin.version, "source_sha256": plugin.source_digest},
                "variant": self.variant.as_record(),
                "weights": {k: v for k, v in weights.items() if v is not None},
                "tools": self._tools,
                "components": components,
                "constants": const_records,
                "parity": parity_records,
                "validation": [c.record() for c in checks],
            }
            if final.exists():
                raise FileExistsError(f"{final} already exists")

            # a marker naming this process: if it dies between moving the export into place and
            # writing the registry, the next export removes the unregistered directory
            marker = {"id": export_id, "pid": os.getpid(), "registry": str(self.registry.path.resolve())}
            (staging / PENDING_MARKER).write_text(json.dumps(marker))

            def move_into_place() -> None:
                os.rename(staging, final)

            try:
                self.registry.add(entry, before_write=move_into_place)
            except BaseException:
                if final.exists() and not staging.exists():
                    shutil.rmtree(final, ignore_errors=True)
                raise
            (final / PENDING_MARKER).unlink(missing_ok=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        report.export_id = export_id
        report.path = str(final)
        report.components = components
