"""The export pipeline, the same for every plugin.

    parity:<component>   the reference level (levels/reference.py): port vs upstream, parity data
    constants            export_constants
    loop_parity          the plugin's whole-loop cases, on the torch runtime
    convert:<component>  convert (the core's default, or the plugin's)
    compress:<component> compressed variants: compress.py on the converted package
    <level>:<component>  each package level (levels/: mil here, coreml on macOS)
    register             publish.py: staging directory → <out>/<id> → registry entry

The model session (session.py) builds reference, traceables and constants only
when a stage is not cached; stages.py caches and reports each stage; report.py
holds what is reported. Data passes between stages as arguments, never through
attributes. An export that fails or is interrupted leaves neither a package in
the output directory nor an entry in the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..host.plugins import PluginHost
from ..host.session import ModelSession, default_weights, resolve_variant
from ..plugin.spec import WeightsSource, stable_hash
from ..registry.store import Registry
from ..util.hashing import tree_sha256
from ..validation import checks as validation
from ..validation import parity
from ..validation.checks import Check
from ..validation.levels import LEVELS, PACKAGE_LEVELS, Level
from .cache import StageCache
from .publish import Bundle, Provenance, ValidatedPackage, publish, remove_abandoned_exports
from .report import ExportFailed, ExportReport, Reporter
from .stages import (
    CONVERTED,
    TORCH_SIDE,
    Stages,
    core_digest,
    read_checks,
    tool_versions,
    weights_identity,
    write_checks,
)

PARITY_FILE = "parity.safetensors.gz"
CALIBRATION_FILE = "calibration.json"


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
        self.model = host.model(model)
        self.variant = resolve_variant(self.model, variant, checkpoint)  # usage errors before anything runs
        self.weights = weights if weights is not None else default_weights(self.model, self.variant)
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
            from ..plugin.spec import UsageError
            from ..run.recogniser import check_asr

            if self.variant.compression == "none":
                raise UsageError(
                    f"--asr judges a compressed variant against its uncompressed packages; {self.variant.name} is not "
                    "compressed "
                    f"(`zoo eval` scores any export's WER)"
                )
            self.asr = check_asr(asr)  # usage errors (no extra, no model) before anything runs

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

    def _run(self) -> None:
        report = self.report
        comps = [c.name for c in self.model.components]
        self.reporter.plan(
            [f"parity:{c}" for c in comps]
            + ["constants", "loop_parity"]
            + [f"convert:{c}" for c in comps]
            + ([f"compress:{c}" for c in comps] if self.variant.compression != "none" else [])
            + [f"{level.name}:{c}" for level in PACKAGE_LEVELS if level.cached for c in comps]
            + (
                ["loop:uncompressed", "loop:compressed"]
                if self.variant.compression != "none" and self.model.compressed_loop is not None
                else []
            )
            + (["eval:compressed"] if self.asr is not None else [])
            + ["register"]
        )
        identity = self.identity()
        stages = Stages(self.cache, report, self.reporter, identity, self.force)
        _, warnings = remove_abandoned_exports(self.out_dir, self.registry)
        report.warnings.extend(warnings)
        # an export judged by a recogniser too is another export than one without (its validation
        # differs): the recogniser's bytes are part of what identical means, not of any stage's key
        asr_sha256 = tree_sha256(self.asr) if self.asr is not None else None  # hashed once: identity and the eval stage
        inputs = stable_hash({**identity, "core": core_digest(), **({"asr": asr_sha256} if asr_sha256 else {})})
        reuse = "no" if self.force else self._reuse(stages, inputs)
        if reuse == "reused":
            return
        session = ModelSession(self.host, self.model.name, self.variant, self.weights, stage=stages.stage)

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
        for comp in self.model.components:
            path = convert_stage(stages, session, comp.name)
            # hashed once the convert stage passed its own check: the cached level verdicts are
            # keyed on it and the copy placed in the export must match it
            packages[comp.name] = ValidatedPackage(path, tree_sha256(path), comp.functions)
        session.release()  # nothing after conversion runs torch: its memory goes before packages load
        bounds: dict[str, tuple[Any, str]] = {}
        uncompressed = dict(packages)
        if self.variant.compression != "none":  # the compressed package is the one validated and shipped
            for comp in comps:
                packages[comp], bound = compress_stage(
                    stages, session, comp, packages[comp], parity_dirs[comp] / PARITY_FILE
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
        if self.variant.compression != "none" and self.model.compressed_loop is not None:
            loop_constants = {name: constants_dir / rel for name, rel in constants.items()}
            audio = self.model.compressed_loop.audio_component
            judged = [
                c
                for c in checks
                if c.level == "mil" and c.component == audio and c.metric == "spectral_max" and c.threshold is not None
            ]
            audio_bound = (judged[0].threshold, judged[0].basis) if judged else None
            checks.extend(compressed_loop_stage(stages, session, uncompressed, packages, loop_constants, audio_bound))
        if self.asr is not None:
            if not weights_speak(self.weights):
                report.warnings.append(
                    "--asr: random weights do not speak, so the compressed packages' QoI was not measured (no check "
                    "recorded)"
                )
            else:
                eval_constants = {name: constants_dir / rel for name, rel in constants.items()}
                checks.extend(
                    compressed_eval_stage(stages, session, uncompressed, packages, eval_constants, self.asr, asr_sha256)
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
        )
        bundle = Bundle(
            packages=packages,
            constants={name: (constants_dir / rel, rel) for name, rel in constants.items()},
            parity={comp: parity_dirs[comp] / PARITY_FILE for comp in comps},
        )
        with stages.stage("register") as info:
            entry, final, reused = publish(
                bundle,
                provenance,
                reached,
                [c.record() for c in checks],
                self.out_dir,
                self.registry,
                self.cache,
                reuse_identical=reuse == "none",
            )
            info["detail"] = entry["id"] + (" (an identical export registered meanwhile: reused)" if reused else "")
        report.export_id = entry["id"]
        report.path = str(final)
        report.components = list(entry["components"])
        report.reused = reused
        report.ok = True

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
                info["detail"] = f"{existing['id']} fails zoo verify ({problems[0].message}): exporting again"
                self.report.warnings.append(
                    f"the identical export {existing['id']} fails `zoo verify`: a new one was made"
                )
                return "damaged"
            info["status"] = "cached"
            info["detail"] = f"{existing['id']}: made from identical inputs (--force makes a new one)"
        report = self.report
        report.export_id, report.path = existing["id"], str(self.registry.export_dir(existing))
        report.level = existing.get("validation_level")
        report.checks = [
            Check(**{k: v for k, v in r.items() if k in Check.__dataclass_fields__})
            for r in existing.get("validation", [])
        ]
        report.components = list(existing["components"])
        report.reused = True
        report.ok = True
        return "reused"


# -- the stages, each a function of the stage runner and the session -------------------------
def reference_stage(stages: Stages, session: ModelSession, component: str) -> Path:
    """The ``reference`` level of one component (levels/reference.py): its checks, the parity data
    every later level executes the package on, and the measurements their bounds derive from."""

    def build(tmp: Path) -> None:
        from ..validation.levels import reference

        result = reference.check_component(
            session.model, session.variant, component, session.reference().model, session.traceables()[component]
        )
        parity.save(tmp / PARITY_FILE, result.cases)
        result.calibration.save(tmp / CALIBRATION_FILE)
        write_checks(tmp, result.checks)

    return stages.cached(f"parity:{component}", build, checked=True, variant_fields=TORCH_SIDE)


def constants_stage(stages: Stages, session: ModelSession) -> tuple[Path, dict[str, str]]:
    """The plugin's constants: (stage directory, {name: path relative to it})."""
    import json

    def build(tmp: Path) -> None:
        root = tmp.resolve()
        names = {name: path.relative_to(root).as_posix() for name, path in session.constants(tmp).items()}
        (tmp / "constants.json").write_text(json.dumps(names, indent=1, sort_keys=True))

    path = stages.cached("constants", build, variant_fields=TORCH_SIDE)
    return path, json.loads((path / "constants.json").read_text())


def loop_parity_stage(stages: Stages, session: ModelSession, constants: dict[str, Path]) -> list[Check]:
    """The plugin's whole-loop cases (optional hook), judged at the reference level."""

    def build(tmp: Path) -> None:
        runtime = session.torch_runtime(tmp, constants)
        write_checks(tmp, validation.loop_checks(session.loop_parity(runtime)))

    return read_checks(stages.cached("loop_parity", build, checked=True, variant_fields=TORCH_SIDE))


def convert_stage(stages: Stages, session: ModelSession, component: str) -> Path:
    def build(tmp: Path) -> None:
        out = tmp / f"{component}.mlpackage"
        saved = session.call(
            "convert",
            variant=session.variant.uncompressed(),
            component=component,
            functions=session.traceables()[component],
            out_path=out,
        )
        if saved is None or Path(saved).resolve() != out.resolve() or not out.exists():
            raise RuntimeError(f"convert must save the package at {out}, got {saved}")
        import gc

        gc.collect()  # the converted program (a cyclic MIL graph holding every weight) goes now

    return stages.cached(f"convert:{component}", build, variant_fields=CONVERTED) / f"{component}.mlpackage"


def compress_stage(
    stages: Stages, session: ModelSession, component: str, package: ValidatedPackage, parity_file: Path
) -> tuple[ValidatedPackage, tuple[Any, str] | None]:
    """The variant's compression of one converted package (compress.py): the compressed package,
    and the bound its outputs are judged by at the package levels (with its basis); None when no
    weight was compressed (the component's own tolerance applies, as uncompressed). ``mixed``
    measures each weight's effect on the parity examples (``parity_file``)."""
    import shutil

    from ..compression.compress import COMPRESSION_FILE, CompressionRecord, MixedTargets, compress_package
    from ..plugin.spec import Tolerance
    from ..util.hashing import file_sha256

    spec = session.model.component(component)
    keep = spec.uncompressed
    mixed = session.variant.compression == "mixed"
    targets = _mixed_targets(session, component, parity_file.parent) if mixed else None
    own = session.model.tolerance(component, session.variant.precision, "mil")
    # chaotic sample by sample (an SNR means nothing there): judged phase-blind by its own
    # calibrated bound, as uncompressed; a weight under its floor still fails it
    chaotic = own.spectral_factor is not None or own.spectral_max is not None

    def progress(done: int, total: int) -> None:
        stages.reporter.begin(f"compress:{component} (measured {done}/{total} layers)")

    def build(tmp: Path) -> None:
        work = tmp / "source.mlpackage"  # compressed from a copy: the cached package is only read
        shutil.copytree(package.path, work)
        record = compress_package(
            work,
            tmp / f"{component}.mlpackage",
            session.variant.compression,
            keep,
            parity_file,
            progress if mixed else None,
            targets or MixedTargets(),
            measure=not chaotic,
        )
        shutil.rmtree(work)
        record.save(tmp / COMPRESSION_FILE)

    extra = {
        "package": package.sha256,
        "uncompressed": list(keep),
        "parity": file_sha256(parity_file),
        "measure": not chaotic,
        **({"targets": repr(targets)} if mixed else {}),
    }
    root = stages.cached(f"compress:{component}", build, extra=extra)
    record = CompressionRecord.load(root / COMPRESSION_FILE)
    path = root / f"{component}.mlpackage"
    compressed = ValidatedPackage(path, tree_sha256(path), package.functions, record.as_dict())
    if not record.weight_snr_db:
        return compressed, None
    bound, basis = record.bound()
    if chaotic:
        broken = record.broken()
        return compressed, ((Tolerance(snr_db_min=float("inf")), broken) if broken else None)
    return compressed, (Tolerance(snr_db_min=round(bound, 2)), basis)


def compressed_loop_stage(
    stages: Stages,
    session: ModelSession,
    before: dict[str, ValidatedPackage],
    after: dict[str, ValidatedPackage],
    constants: dict[str, Path],
    audio_bound: tuple[float, str] | None = None,
) -> list[Check]:
    """The whole run loop on the compressed packages against the uncompressed ones (both executed
    by the MIL interpreter, same text, seed and settings: ``ModelSpec.compressed_loop``). The
    uncompressed loops are a stage of their own, shared by every compression of those packages.
    ``audio_bound``: the mil bound (and basis) the loop's audio component was judged by."""
    loop = session.model.compressed_loop
    reference = uncompressed_loop_stage(stages, session, before, constants)

    def build(tmp: Path) -> None:
        results = {label: _load_loop(reference, label) for label in ("seed0", "seed1")}
        compressed = _speak(session, after, constants, seed=0)
        write_checks(
            tmp, validation.compressed_loop_checks(compressed, results["seed0"], results["seed1"], loop, audio_bound)
        )

    extra = {
        "packages": {c: [before[c].sha256, after[c].sha256] for c in before},
        "loop": repr(loop),
        "audio_bound": list(audio_bound or ()),
    }
    return read_checks(stages.cached("loop:compressed", build, checked=True, extra=extra))


def weights_speak(weights: WeightsSource) -> bool:
    """Whether audio made with ``weights`` is speech a recogniser can score (random weights: not)."""
    return weights.kind != "random"


def compressed_eval_stage(
    stages: Stages,
    session: ModelSession,
    before: dict[str, ValidatedPackage],
    after: dict[str, ValidatedPackage],
    constants: dict[str, Path],
    asr: Path,
    asr_sha256: str,
) -> list[Check]:
    """``zoo eval``'s built-in prompts spoken through the compressed and the uncompressed packages
    (MIL interpreter, same voice, seed and settings), both transcribed by ``asr`` (its tree digest
    ``asr_sha256``); the check ``eval:compressed`` fails when the share of prompts the compressed
    packages say no worse (QoI) is under ``evaluate.QOI_MIN``. Prompts: every language the model
    speaks that the recogniser understands (an English-only recogniser: English). The recogniser
    is loaded only when the stage is not cached: its bytes and the model's prompts are the key."""
    from ..evaluation.evaluate import QOI_MIN, EvalResult, builtin_prompts, evaluate, prompts_digest, speaker
    from ..run.recogniser import Recogniser
    from ..runtime.backends import MilRuntime

    model = session.model

    def build(tmp: Path) -> None:
        recogniser = Recogniser(asr, asr_sha256)
        prompts = builtin_prompts([lang for lang in model.languages if recogniser.multilingual or lang == "en"])
        if not prompts:
            raise ValueError(
                f"--asr {asr}: the recogniser understands none of the languages {model.name} speaks "
                f"({', '.join(model.languages)})"
            )

        def speaks(packages: dict[str, ValidatedPackage]) -> Any:
            runtime = MilRuntime({c: p.path for c, p in packages.items()}, constants)
            return speaker(session.host, model, runtime)

        def progress(done: int, total: int, row: Any) -> None:
            stages.reporter.begin(f"eval:compressed ({done}/{total} prompts)")

        result = EvalResult(
            "", "mil", None, recogniser.path, recogniser.sha256, prompts_digest(prompts), False, "uncompressed"
        )
        evaluate(prompts, {"export": speaks(after), "uncompressed": speaks(before)}, recogniser, result, progress)
        write_checks(tmp, [qoi_check(result)])

    extra = {
        "packages": {c: [before[c].sha256, after[c].sha256] for c in before},
        "asr": asr_sha256,
        "prompts": prompts_digest(builtin_prompts(list(model.languages))),  # the recogniser picks among these
        "qoi_min": QOI_MIN,
    }
    return read_checks(stages.cached("eval:compressed", build, checked=True, extra=extra))


def qoi_check(result: Any) -> Check:
    """The ``eval:compressed`` check of an ``EvalResult`` holding ``export`` (compressed) and
    ``uncompressed`` error rates per prompt."""
    from ..evaluation.evaluate import QOI_MIN

    qoi = result.qoi("uncompressed")
    worse = [p.prompt.text for p in result.prompts if p.rate.get("export", 0) > p.rate.get("uncompressed", 0) + 1e-12]
    summary = result.summary()
    rate = "cer" if summary["export"]["wer"] is None else "wer"
    detail = (
        f"{len(result.prompts)} prompts, {rate.upper()} {summary['uncompressed'][rate]:.3f} uncompressed → "
        f"{summary['export'][rate]:.3f} compressed; "
        f"said worse: {len(worse)}"
        + (f" (first: {worse[0][:60]!r})" if worse else "")
        + f"; recogniser {result.asr.name} sha256 {result.asr_sha256[:12]}"
    )
    basis = (
        f"QoI ≥ {QOI_MIN:g}: the share of prompts the compressed packages say no worse than the uncompressed ones "
        f"(a ±10% tempo change of espeak-ng speech scores 0.857 with Whisper tiny.en: evaluate.QOI_MIN)"
    )
    ok = qoi is not None and qoi >= QOI_MIN
    return Check(
        "mil",
        "eval:compressed",
        "passed" if ok else "failed",
        "qoi_min",
        float("nan") if qoi is None else float(qoi),
        QOI_MIN,
        basis=basis,
        detail=detail,
    )


def uncompressed_loop_stage(
    stages: Stages, session: ModelSession, packages: dict[str, ValidatedPackage], constants: dict[str, Path]
) -> Path:
    """The compressed-loop check's basis: the uncompressed packages' loop with seeds 0 and 1
    (``seed0.npy`` / ``seed1.npy`` audio, ``frames.json``)."""
    import json

    import numpy as np

    loop = session.model.compressed_loop

    def build(tmp: Path) -> None:
        frames = {}
        for seed in (0, 1):
            result = _speak(session, packages, constants, seed)
            np.save(tmp / f"seed{seed}.npy", np.asarray(result.audio, np.float32))
            frames[f"seed{seed}"] = [int(result.frames), int(result.sample_rate), [int(n) for n in result.segments]]
        (tmp / "frames.json").write_text(json.dumps(frames))

    extra = {"packages": {c: p.sha256 for c, p in packages.items()}, "loop": repr(loop)}
    return stages.cached("loop:uncompressed", build, extra=extra, variant_fields=CONVERTED)


def _speak(session: ModelSession, packages: dict[str, ValidatedPackage], constants: dict[str, Path], seed: int) -> Any:
    from ..plugin.spec import RunOptions
    from ..runtime.backends import MilRuntime

    loop = session.model.compressed_loop
    runtime = MilRuntime({c: p.path for c, p in packages.items()}, constants)
    return session.call(
        "run_loop", runtime=runtime, text=loop.text, options=RunOptions(seed=seed, settings=dict(loop.settings))
    )


def _load_loop(directory: Path, label: str) -> Any:
    import json

    import numpy as np

    from ..plugin.spec import RunResult

    frames, rate, segments = json.loads((directory / "frames.json").read_text())[label]
    return RunResult(
        np.load(directory / f"{label}.npy", allow_pickle=False),
        int(rate),
        int(frames),
        segments=tuple(int(n) for n in segments),
    )


def _mixed_targets(session: ModelSession, component: str, parity_dir: Path) -> Any:
    """What the ``mixed`` compression aims at for each output of ``component`` (compress.MixedTargets):
    integer outputs by their margin to the rounding boundary; a chaotic component's audio no farther (spectral
    distance from the uncompressed package) than torch's own movement for a perturbation at the variant's precision."""
    from ..compression.compress import MixedTargets
    from ..validation.calibration import Calibration

    spec = session.model.component(component)
    precision = session.variant.precision
    integer = tuple(sorted(spec.integer_outputs.items()))
    own = session.model.tolerance(component, precision, "mil")
    if own.spectral_factor is None:
        return MixedTargets(integer=integer)
    import math

    moved = Calibration.load(parity_dir / CALIBRATION_FILE).sensitivity.get(precision)
    if not moved:
        raise ValueError(
            f"{component}: no {precision} movement was measured for the mixed compression's spectral target"
        )
    return MixedTargets(
        (),
        -20 * math.log10(moved),
        f"spectral distance ≤ torch's own movement {moved:.3g} for a {precision} perturbation",
        integer,
    )


def package_level_stage(
    stages: Stages,
    session: ModelSession,
    level: Level,
    component: str,
    package: ValidatedPackage,
    parity_dir: Path,
    bound: tuple[Any, str] | None = None,
) -> list[Check]:
    """One package level (levels/) on one component, its bounds resolved from the calibration the
    reference stage measured (or, for a compressed package, ``bound``: from its compression)."""
    from ..validation.calibration import Calibration

    ok, reason = level.available()
    if not ok:
        return [validation.skipped(level.name, reason, component)]
    calibration = Calibration.load(parity_dir / CALIBRATION_FILE)
    precision = session.variant.precision
    if bound is not None:
        tolerance, basis = bound
    else:
        tolerance, basis = calibration.resolve(session.model.tolerance(component, precision, level.name), precision)
    compressed = bool((package.compression or {}).get("compressed_weights"))
    options = {
        "integer_outputs": session.model.component(component).integer_outputs,
        "basis": basis,
        "precision": precision,
        "integer_tempo": validation.INTEGER_TEMPO if compressed else None,
    }
    parity_file = parity_dir / PARITY_FILE
    if not level.cached:
        with stages.stage(f"{level.name}:{component}"):
            return level.execute(component, package.path, parity_file, tolerance, **options)

    def build(tmp: Path) -> None:
        write_checks(tmp, level.execute(component, package.path, parity_file, tolerance, **options))

    # keyed on the package's bytes: a verdict is never reused for another package
    return read_checks(
        stages.cached(f"{level.name}:{component}", build, checked=True, extra={"package": package.sha256})
    )
