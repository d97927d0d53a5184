"""The export pipeline, the same for every plugin: ``Exporter`` runs the stages in order.

    parity:<component>   the reference level (levels/reference.py): port vs upstream, parity data
    constants            export_constants
    loop_parity          the plugin's whole-loop cases, on the torch runtime
    convert:<component>  convert (the core's default, or the plugin's)
    compress:<component> compressed variants (compression.policy decides what compression adds)
    <level>:<component>  each package level (levels/: mil here, coreml on macOS)
    loop:*, eval:*       compressed variants: the run loop, and --asr's QoI, against the uncompressed
    register             publish.py: staging directory → <out>/<id> → registry entry

Each stage is a function in ``steps/``; the model session (host/session.py) builds reference,
traceables and constants only when a stage is not cached; stages.py caches and reports each stage;
report.py holds what is reported. The model, variant and weights are resolved once (``Target``) and
passed. An export that fails or is interrupted leaves neither a package in the output directory nor
an entry in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..compression.policy import CompressionPolicy, PackageBound
from ..host.plugins import PluginHost
from ..host.session import ModelSession, Target
from ..plugin.spec import WeightsSource
from ..registry.store import Registry
from ..util.hashing import stable_hash, tree_sha256
from ..validation import checks as validation
from ..validation.checks import Check
from ..validation.levels import LEVELS, PACKAGE_LEVELS
from .cache import StageCache
from .publish import Bundle, Provenance, ValidatedPackage, publish, remove_abandoned_exports
from .report import ExportFailed, ExportReport, Reporter
from .stages import PARITY_FILE, Stages, core_digest, read_checks, tool_versions, weights_identity
from .steps import (
    compress_stage,
    compressed_constants_stage,
    compressed_eval_stage,
    compressed_loop_stage,
    constants_stage,
    convert_stage,
    loop_parity_stage,
    package_level_stage,
    reference_stage,
    weights_speak,
)


class Exporter:
    """One export of ``model`` (``variant``, ``weights``) into ``out_dir`` and ``registry``."""

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
        checkpoint: str | None = None,
        asr: str | Path | None = None,
    ):
        self.host = host
        self.target = Target.resolve(host, model, variant, weights, checkpoint)  # usage errors before anything runs
        self.model, self.variant, self.weights = self.target.model, self.target.variant, self.target.weights
        self.policy = CompressionPolicy.of(self.model, self.variant)
        self.out_dir = Path(out_dir)
        self.registry = registry or Registry()
        self.cache = cache or StageCache()
        self.force = force
        self.reporter = reporter or Reporter()
        self.report = ExportReport(model=self.model.name, variant=self.variant.name, weights=self.weights.describe())
        #: a speech recogniser (CTranslate2 Whisper directory): a compressed variant's packages then
        #: also speak the eval prompts against the uncompressed ones (``eval:compressed``, QoI)
        self.asr = None
        if asr is not None:
            from ..plugin.errors import UsageError
            from ..run.recogniser import check_asr

            if self.model.output != "audio":
                raise UsageError(f"--asr scores speech; {self.model.name} outputs {self.model.output}, not audio")
            if not self.policy.compresses:
                raise UsageError(
                    f"--asr judges a compressed variant against its uncompressed packages; {self.variant.name} is not "
                    "compressed "
                    f"(`zoo eval` scores any export's WER)"
                )
            self.asr = check_asr(asr)  # usage errors (no extra, no model) before anything runs

    def run(self) -> ExportReport:
        """Prepare the export, then register it (one process: today's `zoo export`)."""
        prepared = self.prepare()
        if prepared is not None:
            self.register(prepared)
        return self.report

    def prepare(self, clean: bool = True) -> "Prepared | None":
        """Every stage but the registration: the validated bundle (in the stage cache) and what its
        entry will record; None when an identical export is registered already (reused, said in the
        report). A matrix worker stops here and its driver registers (``register``). ``clean``: first
        remove what an interrupted export abandoned in the output directory (the driver's job in a
        matrix: a worker on another node cannot tell whether the process that left it is alive)."""
        report = self.report
        try:
            return self._prepare(clean)
        except ExportFailed:
            raise
        except Exception as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            raise ExportFailed(report.error, report) from exc

    def register(self, prepared: "Prepared") -> ExportReport:
        """Copy ``prepared`` into ``<out>/<id>`` and register it, under the registry's lock."""
        try:
            register(prepared, self.out_dir, self.registry, self.cache, self.report, self.reporter)
        except ExportFailed:
            raise
        except Exception as exc:
            self.report.error = f"{type(exc).__name__}: {exc}"
            raise ExportFailed(self.report.error, self.report) from exc
        return self.report

    def identity(self) -> dict[str, Any]:
        """What every stage key of this export includes (see stages.py)."""
        plugin = self.host.plugin_info(self.model)
        return {
            "model": self.model.name,
            "plugin": [plugin.name, plugin.version, plugin.source_digest],
            "variant": self.variant.as_record(),
            "weights": weights_identity(self.weights, getattr(self.reporter, "note", None)),
            "tools": tool_versions(),
            "components": [(c.name, c.functions) for c in self.model.components],
        }

    def _prepare(self, clean: bool) -> "Prepared | None":
        report = self.report
        comps = [c.name for c in self.model.components]
        self.reporter.plan(
            [f"parity:{c}" for c in comps]
            + ["constants", "loop_parity"]
            + [f"convert:{c}" for c in comps]
            + self.policy.compress_stages(comps)
            + [f"{level.name}:{c}" for level in PACKAGE_LEVELS if level.cached for c in comps]
            + (["compress:constants"] if self.policy.compresses_constants else [])
            + self.policy.loop_stages()
            + (["eval:compressed"] if self.asr is not None else [])
            + ["register"]
        )
        identity = self.identity()
        stages = Stages(self.cache, report, self.reporter, identity, self.force)
        if clean:
            _, warnings = remove_abandoned_exports(self.out_dir, self.registry)
            report.warnings.extend(warnings)
        # an export judged by a recogniser too is another export than one without (its validation
        # differs): the recogniser's bytes are part of what identical means, not of any stage's key
        asr_sha256 = tree_sha256(self.asr) if self.asr is not None else None  # hashed once: identity and the eval stage
        inputs = stable_hash({**identity, "core": core_digest(), **({"asr": asr_sha256} if asr_sha256 else {})})
        reuse = "no" if self.force else self._reuse(stages, inputs)
        if reuse == "reused":
            return None
        session = ModelSession(self.host, self.target, stage=stages.stage)

        checks: list[Check] = []
        parity_dirs: dict[str, Path] = {}
        for comp in comps:
            parity_dirs[comp] = reference_stage(stages, session, comp)
            checks.extend(read_checks(parity_dirs[comp]))
        constants_dir, constants = constants_stage(stages, session)
        checks.extend(
            loop_parity_stage(stages, session, {name: constants_dir / rel for name, rel in constants.items()})
        )
        report.checks = checks
        if validation.level_failed(checks, "reference"):
            failed = sorted({c.component for c in checks if c.status == "failed"})
            raise ExportFailed(f"reference parity failed for {', '.join(failed)}; nothing was exported", report)

        packages: dict[str, ValidatedPackage] = {}
        for spec in self.model.components:
            path = convert_stage(stages, session, spec.name)
            # hashed once the convert stage passed its own check: the cached level verdicts are
            # keyed on it and the copy placed in the export must match it
            packages[spec.name] = ValidatedPackage(path, tree_sha256(path), spec.functions)
        session.release()  # nothing after conversion runs torch: its memory goes before packages load
        bounds: dict[str, PackageBound] = {}
        uncompressed = dict(packages)
        if self.policy.compresses:  # the compressed package is the one validated and shipped
            for comp in comps:
                packages[comp], bound = compress_stage(
                    stages, session, self.policy, comp, packages[comp], parity_dirs[comp]
                )
                if bound is not None:
                    bounds[comp] = bound
        for level in PACKAGE_LEVELS:
            for comp in comps:
                checks.extend(
                    package_level_stage(
                        stages, session, level, comp, packages[comp], parity_dirs[comp], bounds.get(comp)
                    )
                )
        constant_paths = {name: constants_dir / rel for name, rel in constants.items()}
        shipped, constant_checks = compressed_constants_stage(
            stages, session, self.policy, {name: (constants_dir / rel, rel) for name, rel in constants.items()}
        )
        checks.extend(constant_checks)
        shipped_paths = {name: path for name, (path, _) in shipped.items()}
        if self.policy.loop is not None:
            audio_bound = self.policy.audio_bound(checks)
            checks.extend(
                compressed_loop_stage(
                    stages,
                    session,
                    self.policy.loop,
                    uncompressed,
                    packages,
                    constant_paths,
                    shipped_paths,
                    audio_bound,
                )
            )
        if self.asr is not None and asr_sha256 is not None:
            if not weights_speak(self.weights):
                report.warnings.append(
                    "--asr: random weights do not speak, so the compressed packages' QoI was not measured (no check "
                    "recorded)"
                )
            else:
                checks.extend(
                    compressed_eval_stage(
                        stages, session, uncompressed, packages, constant_paths, shipped_paths, self.asr, asr_sha256
                    )
                )
        report.checks = checks
        reached = validation.level_reached(checks)
        required = self.model.required_level
        if reached is None or LEVELS.index(reached) < LEVELS.index(required):
            raise ExportFailed(f"required validation level {required!r} was not reached (reached: {reached})", report)
        report.level = reached

        plugin_name, plugin_version, plugin_digest = identity["plugin"]
        weights = {"source": self.weights.describe(), **identity["weights"]}
        reference_files = session.loaded_reference_files()
        if reference_files:
            weights["files"] = reference_files
        if self.variant.checkpoint:  # which released weights, as upstream pins them
            weights["checkpoint"] = self.model.checkpoint(self.variant.checkpoint).as_record()
        provenance = Provenance(
            model=self.model.name,
            variant=self.variant.as_record(),
            plugin={"name": plugin_name, "version": plugin_version, "source_sha256": plugin_digest},
            weights={k: v for k, v in weights.items() if v is not None},
            tools=identity["tools"],
            inputs_sha256=inputs,
            resources={
                "peak_rss_mb": round(max((st.peak_rss_mb for st in report.stages), default=0.0)),
                "seconds": round(sum(st.seconds for st in report.stages), 1),
            },
        )
        bundle = Bundle(
            packages=packages,
            constants=shipped,
            parity={comp: parity_dirs[comp] / PARITY_FILE for comp in comps},
        )
        return Prepared(bundle, provenance, reached, [c.record() for c in checks], reuse == "none")

    def _reuse(self, stages: Stages, inputs: str) -> str:
        """An identical valid export already registered, whose files still hash as registered:
        the report names it and nothing is done (``--force`` makes a new one). Returns "reused",
        "none" (no identical export: one registered meanwhile may be reused at registration) or
        "damaged" (the identical export fails verify: a new one is registered)."""
        from ..registry.verify import verify_entry

        existing = self.registry.identical(inputs)
        if existing is None:
            return "none"
        with stages.stage("reuse") as info:
            problems = verify_entry(self.registry, existing)
            if problems:
                info["detail"] = f"{existing.id} fails zoo verify ({problems[0].message}): exporting again"
                self.report.warnings.append(
                    f"the identical export {existing.id} fails `zoo verify`: a new one was made"
                )
                return "damaged"
            info["status"] = "cached"
            info["detail"] = f"{existing.id}: made from identical inputs (--force makes a new one)"
        report = self.report
        report.export_id, report.path = existing.id, str(self.registry.export_dir(existing))
        report.level = existing.validation_level
        report.checks = [
            Check(**{k: v for k, v in r.items() if k in Check.__dataclass_fields__}) for r in existing.validation
        ]
        report.components = [c.record() for c in existing.components]
        report.reused = True
        report.ok = True
        return "reused"


@dataclass(frozen=True)
class Prepared:
    """An export validated and ready to register: its bundle (files in the stage cache), provenance,
    level reached and validation records; ``reuse_identical``: an identical export registered
    meanwhile is reused instead of registering this one. Plain data: it crosses process boundaries
    (a matrix worker hands it to its driver)."""

    bundle: Bundle
    provenance: Provenance
    level: str
    validation: list[dict[str, Any]]
    reuse_identical: bool = True


def register(
    prepared: Prepared, out_dir: Path, registry: Registry, cache: StageCache, report: ExportReport, reporter: Reporter
) -> None:
    """The ``register`` stage: ``prepared`` copied into ``<out_dir>/<id>`` and its entry written
    (publish.py), the report filled in."""
    with Stages(cache, report, reporter, {}, False).stage("register") as info:
        entry, final, reused = publish(
            prepared.bundle,
            prepared.provenance,
            prepared.level,
            prepared.validation,
            out_dir,
            registry,
            cache,
            reuse_identical=prepared.reuse_identical,
        )
        info["detail"] = entry.id + (" (an identical export registered meanwhile: reused)" if reused else "")
    report.export_id = entry.id
    report.path = str(final)
    report.components = [c.record() for c in entry.components]
    report.reused = reused
    report.level = prepared.level
    report.ok = True
