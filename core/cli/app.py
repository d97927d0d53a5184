"""The `zoo` command line.

Plugins are loaded only by the commands that need them, and torch/coremltools
only by the hooks that use them, so `zoo --help` and `zoo list` stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

# coremltools' per-pass progress bars (tqdm, configured once at import) would drown zoo's own
import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ..registry.store import ENV_VAR as REGISTRY_ENV  # noqa: E402
from ..registry.store import Registry, RegistryError  # noqa: E402

app = typer.Typer(
    name="zoo",
    help=(
        "Export PyTorch text-to-speech models to CoreML packages, validate them against the upstream "
        "model, record them in registry.toml, and run them.\n\n"
        "Start with `zoo list`, then `zoo export MODEL --random-weights` (no download) or `zoo export MODEL`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_USAGE = 2
#: exports `zoo list` shows without --all (the newest)
LIST_ROWS = 50


class State:
    def __init__(self, registry: Optional[Path], strict: bool):
        self.registry_path = registry
        self.strict = strict
        self._host: Any = None
        self._registry: Registry | None = None

    def registry(self) -> Registry:
        """One Registry per command (it keeps its parse while the file is unchanged)."""
        if self._registry is None:
            self._registry = Registry(self.registry_path)
        return self._registry

    def host(self) -> Any:
        if self._host is None:
            from ..host.plugins import PluginHost, PluginLoadError

            try:
                self._host = PluginHost(strict=self.strict)
            except PluginLoadError as exc:
                err.print(f"[red]✗ plugin failed to load (--strict):[/] {exc}")
                raise typer.Exit(EXIT_FAILED) from None
            for info in self._host.failures:
                err.print(f"[yellow]! plugin {info.name!r} is unavailable:[/] {info.error}")
        return self._host


def _state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State) if ctx.obj is None else ctx.obj


def _model(ctx: typer.Context, name: str) -> Any:
    from ..host.plugins import UnknownModelError

    try:
        return _state(ctx).host().model(name)
    except UnknownModelError as exc:
        err.print(f"[red]✗ {exc}[/]")
        raise typer.Exit(EXIT_USAGE) from None


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    err.print(f"[red]✗ {message}[/]")
    raise typer.Exit(code)


def _registry_or_exit(ctx: typer.Context, write: bool = False) -> Registry:
    """The registry, read and checked (exit 1 naming what is wrong); ``write``: also checked to be
    writable (its lock a regular file), before any work starts."""
    registry = _state(ctx).registry()
    try:
        registry.read()
        if write:
            registry.check_writable()
    except RegistryError as exc:
        _fail(str(exc))
    return registry


def _version_callback(value: bool) -> None:
    if value:
        from ... import __version__

        out.print(f"zoo {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    registry: Optional[Path] = typer.Option(
        None, "--registry", envvar=REGISTRY_ENV, help="registry file to read and write \\[default: ./registry.toml]"
    ),
    strict: bool = typer.Option(
        False, "--strict", envvar="ZOO_STRICT", metavar="", help="treat a plugin that fails to load as a fatal error"
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, metavar="", help="print zoo's version"
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        envvar="ZOO_VERBOSE",
        metavar="",
        help="also show the libraries' own warnings (coremltools, torch, upstream models)",
    ),
) -> None:
    if not verbose:
        _quiet_libraries()
    from ..registry.store import default_registry_path

    path = registry if registry is not None else default_registry_path()
    if path.is_dir():
        _fail(f"--registry {path} is a directory; give the registry file (e.g. {path / 'registry.toml'})", EXIT_USAGE)
    ctx.obj = State(registry, strict)


def _quiet_libraries() -> None:
    """The zoo command reports what matters itself (checks, stages, errors); the libraries'
    warnings (coremltools' int64->int32 casts and tuple flattening, torch's tracer, an upstream
    model's chunking notes) are shown with --verbose only. Errors always show."""
    import logging
    import warnings

    logging.getLogger().setLevel(logging.ERROR)
    for name in ("coremltools", "torch", "transformers", "diffusers", "pocket_tts", "kokoro", "misaki", "phonemizer"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def _weights(weights: Optional[Path], random_weights: bool, seed: int) -> Any:
    from ..plugin.spec import WeightsSource

    if weights is not None and random_weights:
        _fail("--weights and --random-weights exclude each other", EXIT_USAGE)
    if weights is not None:
        if not weights.exists():
            _fail(f"--weights {weights}: no such file or directory", EXIT_USAGE)
        return WeightsSource.local(weights)
    if random_weights:
        return WeightsSource.random(seed)
    return None


# ---------------------------------------------------------------------------- list
@app.command("list")
def list_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", metavar="", help="print one JSON object (every export)"),
    show_all: bool = typer.Option(
        False, "--all", metavar="", help=f"show every export, not only the newest {LIST_ROWS}"
    ),
) -> None:
    """List plugins (version, hooks, models, load errors) and the registered exports (the newest first)."""
    state = _state(ctx)
    host = state.host()
    try:
        exports = state.registry().exports()
        registry_error = None
        from ..export.publish import orphaned_exports

        orphans = [str(p) for p in orphaned_exports(state.registry())]
    except RegistryError as exc:
        exports, registry_error, orphans = [], str(exc), []
    if as_json:
        print(
            json.dumps(
                {
                    "plugins": [p.__dict__ for p in host.plugins.values()],
                    "models": {
                        name: {"plugin": m.plugin, "summary": m.summary, "default_variant": m.default_variant}
                        for name, m in host.models.items()
                    },
                    "exports": [
                        {k: e.get(k) for k in ("id", "model", "status", "validation_level", "created_at", "path")}
                        for e in exports
                    ],
                    "registry_error": registry_error,
                    "orphans": orphans,
                },
                indent=1,
            )
        )
        if registry_error:  # like every other command: a broken registry is a failure
            raise typer.Exit(EXIT_FAILED)
        return
    from . import describe

    out.print(describe.plugins(host.plugins.values()))
    if host.models:
        out.print(describe.models(host.models.values()))
    if registry_error:
        err.print(f"[red]✗ {registry_error}[/]")
        raise typer.Exit(EXIT_FAILED)
    table = Table(title=f"exports in {state.registry().path}", title_justify="left")
    # ids are what users copy: never cut or wrapped; the id carries model, variant and time,
    # so a narrow terminal shows the id and the validation only
    narrow = out.width < 120
    table.add_column("id", no_wrap=True, min_width=max((len(e["id"]) for e in exports), default=2))
    for col in ("status", "level") if narrow else ("model", "variant", "status", "level", "created"):
        table.add_column(col, no_wrap=True)
    shown = sorted(exports, key=lambda e: e.get("created_at", ""), reverse=True)
    hidden = 0 if show_all else max(0, len(shown) - LIST_ROWS)
    shown = shown[: len(shown) - hidden]
    for e in shown:
        status, level = e.get("status", "?"), e.get("validation_level") or "-"
        table.add_row(e["id"], status, level) if narrow else table.add_row(
            e["id"], e["model"], e.get("variant", {}).get("name", "?"), status, level, e.get("created_at", "")
        )
    _print_orphans(orphans)
    if not exports:
        out.print(f"no exports in {state.registry().path} yet — try `zoo export MODEL --random-weights`")
    else:
        out.print(table)
        if hidden:
            out.print(f"… and {hidden} older exports (`zoo list --all` shows every one; `zoo info MODEL` a model's)")


def _print_orphans(orphans: list[str]) -> None:
    for path in orphans:
        err.print(
            f"[yellow]! orphaned export {path}: complete but never registered (its process was killed); the next `zoo "
            "export` into that directory removes it[/]"
        )


# -------------------------------------------------------------------------- export
@app.command()
def export(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model name (see `zoo list`)"),
    variant: Optional[str] = typer.Option(None, "--variant", help="variant to export \\[default: the model's default]"),
    checkpoint: Optional[str] = typer.Option(
        None,
        "--checkpoint",
        help="released checkpoint (language, size) for models that have several; `zoo info MODEL` lists them "
        "\\[default: the model's default]",
    ),
    weights: Optional[Path] = typer.Option(
        None,
        "--weights",
        help="local weights: a directory laid out like the model's hub repository, or a file where the model has one",
    ),
    random_weights: bool = typer.Option(
        False, "--random-weights", metavar="", help="real architecture, seeded random weights, no network"
    ),
    seed: int = typer.Option(0, "--seed", help="seed for --random-weights"),
    out_dir: Path = typer.Option(Path("exports"), "--out", help="directory the export is placed in (as <out>/<id>/)"),
    force: bool = typer.Option(False, "--force", metavar="", help="redo every stage instead of reusing cached ones"),
    cache: Optional[Path] = typer.Option(
        None, "--cache", envvar="ZOO_CACHE", help="stage cache directory \\[default: ~/.cache/zoo]"
    ),
    asr: Optional[Path] = typer.Option(
        None,
        "--asr",
        metavar="DIR",
        help="compressed variants: also speak zoo eval's prompts through the compressed and uncompressed packages, "
        "transcribe them with this CTranslate2 Whisper model (zoo-tts\\[eval]) and refuse a QoI under 0.75",
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print one JSON object instead of tables"),
) -> None:
    """Export MODEL: reference → traceables → parity → CoreML → constants → validation → registry.

    Outputs are built aside and moved to OUT/<id> only when everything passed; an
    interrupted or failed export leaves no package and no registry entry.
    Finished stages are cached: running the same export again reuses them.
    """
    from ..export.cache import StageCache
    from ..export.pipeline import Exporter
    from ..export.report import ExportFailed, RichReporter, print_report

    state = _state(ctx)
    spec = _model(ctx, model)
    source = _weights(weights, random_weights, seed)
    if out_dir.exists() and not out_dir.is_dir():
        _fail(f"--out {out_dir} is a file; give the directory exports are placed in", EXIT_USAGE)
    registry = _registry_or_exit(ctx, write=True)
    try:
        exporter = Exporter(
            state.host(),
            spec.name,
            variant,
            source,
            out_dir,
            registry,
            StageCache(cache),
            force,
            checkpoint=checkpoint,
            asr=asr,
        )
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    with RichReporter(err, quiet=as_json) as reporter:
        exporter.reporter = reporter
        try:
            report = exporter.run()
        except ExportFailed as exc:
            report = exc.report
            report.error = report.error or str(exc)
        except KeyboardInterrupt:
            err.print("[red]✗ interrupted: nothing was registered or placed in the output directory[/]")
            raise typer.Exit(130) from None
    if as_json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print_report(report, out, err)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


# -------------------------------------------------------------------------- verify
@app.command()
def verify(
    ctx: typer.Context,
    key: str = typer.Argument("", metavar="[MODEL|ID]", help="only exports of this model, or this export id"),
    execute: bool = typer.Option(
        False,
        "--execute",
        metavar="",
        help="also re-run the recorded parity inputs through each package with zoo's MIL interpreter",
    ),
    checkpoint: Optional[str] = typer.Option(
        None, "--checkpoint", help="only exports of this checkpoint (models that have several)"
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print one JSON object"),
) -> None:
    """Re-hash every registered package, constant and parity file; exit 1 naming anything changed or missing.

    With --execute, each intact package is also executed on its recorded parity
    inputs and compared with the recorded torch outputs, against the thresholds
    the export was judged by.
    """
    from ..registry.verify import verify as run_verify

    if checkpoint is not None and not checkpoint.strip():
        _fail("--checkpoint is empty; give a checkpoint name or leave the option out", EXIT_USAGE)
    registry = _registry_or_exit(ctx)
    with err.status("verifying…") as status:  # shown on a terminal only: hashing and executing take seconds to minutes

        def progress(step: str) -> None:
            if not as_json:
                status.update(f"verifying… {step}")

        host = _state(ctx).host()
        entries, problems, executed = run_verify(
            registry,
            key,
            execute,
            progress,
            checkpoint,
            lambda name: host.models[name].default_checkpoint if name in host.models else "",
        )
    if (key or checkpoint) and not entries:
        what = " ".join(
            x for x in (f"model {key!r}" if key else "", f"checkpoint {checkpoint!r}" if checkpoint else "") if x
        )
        _fail(
            f"no export of {what} in {registry.path}"
            if checkpoint
            else f"no export or model {key!r} in {registry.path}",
            EXIT_USAGE,
        )
    from ..export.publish import orphaned_exports

    orphans = [str(p) for p in orphaned_exports(registry)]
    if as_json:
        print(
            json.dumps(
                {
                    "checked": [e["id"] for e in entries],
                    "ok": not problems,
                    "problems": [p.as_dict() for p in problems],
                    "executed": executed,
                    "orphans": orphans,
                },
                indent=1,
            )
        )
    else:
        bad = {p.export_id for p in problems}
        for e in entries:
            if e["id"] not in bad:
                ran = " and execute within thresholds" if execute else ""
                out.print(
                    f"[green]✓[/] {e['id']}: {len(e.get('components', []))} components, {len(e.get('constants', []))} "
                    f"constants match{ran}"
                )
        for p in problems:
            what = "" if p.kind == "export" else f"{p.kind} {p.name!r}: "
            out.print(f"[red]✗[/] {p.export_id}: {what}{p.message}")
        if not entries:
            out.print(f"no exports in {registry.path}")
        _print_orphans(orphans)
    if problems:
        raise typer.Exit(EXIT_FAILED)


# ---------------------------------------------------------------------------- info
@app.command()
def info(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="", help="model name"),
    checkpoint: Optional[str] = typer.Option(
        None, "--checkpoint", help="only this checkpoint's exports and voices (models that have several)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Describe MODEL: plugin, checkpoints, variants, components, tolerances, weights and its exports."""
    from ..host.session import checkpoint_name
    from ..registry.store import entry_checkpoint

    state = _state(ctx)
    spec = _model(ctx, model)
    if checkpoint is not None:
        try:
            checkpoint_name(spec, checkpoint)  # described even when it cannot be exported (the table says why)
        except ValueError as exc:
            _fail(str(exc), EXIT_USAGE)
    plugin = state.host().plugin_info(spec)
    registry_error = None
    try:
        exports = list(state.registry().find(spec.name))
    except RegistryError as exc:
        exports, registry_error = [], str(exc)
    if checkpoint is not None:
        exports = [e for e in exports if entry_checkpoint(e, spec.default_checkpoint) == checkpoint]
    data = {
        "model": spec.name,
        "summary": spec.summary,
        "plugin": {"name": plugin.name, "version": plugin.version, "hooks": plugin.hooks},
        "hub": {"repo": spec.hub_repo, "revision": spec.revision},
        "sample_rate": spec.sample_rate,
        "required_level": spec.required_level,
        "default_variant": spec.default_variant,
        "variants": {name: v.as_record() | {"description": v.description} for name, v in spec.variants.items()},
        "default_checkpoint": spec.default_checkpoint or None,
        "checkpoints": {
            name: {
                "description": c.description,
                "family": c.family,
                "hub": {"repo": c.hub_repo, "revision": c.revision},
                "source": c.source,
                **({"unsupported": c.unsupported} if c.unsupported else {}),
            }
            for name, c in spec.checkpoints.items()
        },
        "components": [
            {
                "name": c.name,
                "description": c.description,
                "functions": list(c.functions),
                "tolerances": {p: _tolerance_summary(spec, c.name, p) for p in ("fp32", "fp16")},
                **(
                    {"uncompressed": list(c.uncompressed), "uncompressed_reason": c.uncompressed_reason}
                    if c.uncompressed
                    else {}
                ),
            }
            for c in spec.components
        ],
        "exports": [
            {**{k: e.get(k) for k in ("id", "status", "validation_level", "created_at")}, "eval": e.get("eval", [])}
            for e in exports
        ],
    }
    data["run_settings"] = [
        {
            "name": s.name,
            "type": s.type.__name__,
            "default": s.default,
            "min": s.min,
            "max": s.max,
            "above": s.above,
            "help": s.help,
            "accepts": s.describe(),
        }
        for s in spec.run_settings
    ]
    data["clones_voices"] = spec.clones_voices
    if spec.compressed_loop is not None:
        loop = spec.compressed_loop
        data["compressed_loop"] = {
            "text": loop.text,
            "frames_max_delta": loop.frames_max_delta,
            "spectral_factor": loop.spectral_factor,
            "settings": dict(loop.settings),
            "basis": loop.basis,
        }
    data["voices"] = _latest_voices(state, spec, checkpoint)
    if registry_error:
        data["registry_error"] = registry_error
    if as_json:
        print(json.dumps(data, indent=1))
        if registry_error:
            raise typer.Exit(EXIT_FAILED)
        return
    out.print(f"[bold]{spec.name}[/] — {spec.summary}")
    out.print(f"plugin {plugin.name} {plugin.version}; {spec.sample_rate} Hz; required level: {spec.required_level}")
    out.print(f"weights: {spec.hub_repo or '(no hub repo)'}@{spec.revision or '-'}")
    out.print(f"hooks: {', '.join(h for h in plugin.hooks if h != 'zoo_register_models')}")
    from ..plugin.names import COMPRESSION_SUMMARIES
    from . import describe

    for block in describe.variants(spec, COMPRESSION_SUMMARIES):
        out.print(block)
    if spec.checkpoints:
        out.print(describe.checkpoints(spec))
    out.print(describe.components(data["components"]))
    if spec.compressed_loop is not None:
        out.print(f"compressed variants' whole loop vs uncompressed: {spec.compressed_loop.basis}")
    if spec.run_settings:
        out.print(describe.run_settings(spec.run_settings))
    if data["voices"] is not None:
        clone = "; or --voice FILE.wav to clone a voice" if spec.clones_voices else ""
        out.print(f"voices of the latest export: {', '.join(data['voices']) or '(none)'}{clone}")
    out.print(f"{len(exports)} export(s) registered" + (f"; latest: {exports[-1]['id']}" if exports else ""))
    for e in exports:
        for row in e.get("eval", []):
            out.print(f"zoo eval of {e['id']}: {_eval_line(row)}")
    if registry_error:
        err.print(f"[red]✗ {registry_error}[/]")
        raise typer.Exit(EXIT_FAILED)


def _eval_line(row: dict[str, Any]) -> str:
    """One recorded ``zoo eval`` as a line: its figures, or why it makes no claim."""
    what = f"{row.get('prompts', '?')} prompts ({', '.join(row.get('languages', []))}), {row.get('backend', '?')}"
    if not row.get("quality_claim"):
        return f"{what}: {row.get('note', 'no quality claim')}"
    figures = [
        f"{k.replace('_', ' ').upper() if k.endswith(('wer', 'cer')) else k} {row[k]:.3f}"
        for k in (
            "export_wer",
            "reference_wer",
            "uncompressed_wer",
            "export_cer",
            "reference_cer",
            "uncompressed_cer",
            "qoi",
            "qoi_vs_uncompressed",
        )
        if k in row
    ]
    return f"{what}: " + ", ".join(figures)


def _latest_voices(state: "State", spec: Any, checkpoint: str | None = None) -> list[str] | None:
    """The voices of the model's latest valid export (of ``checkpoint``; None: no export, or no named voices)."""
    from ..run.speak import export_voices

    try:
        registry = state.registry()
        entry = registry.latest_valid(spec.name, checkpoint, spec.default_checkpoint)
        return None if entry is None else export_voices(state.host(), spec, registry, entry)
    except Exception:  # noqa: BLE001 - a description never fails on a damaged export (zoo verify reports it)
        return None


def _tolerance_summary(spec: Any, component: str, precision: str) -> dict[str, Any]:
    """The reference-level thresholds, plus the levels whose thresholds differ."""
    base = spec.tolerance(component, precision)
    summary: dict[str, Any] = dict(base.checks())
    from ..validation.levels import PACKAGE_LEVELS

    for level in PACKAGE_LEVELS:
        other = spec.tolerance(component, precision, level.name)
        if other != base:
            summary[level.name] = other.checks()
    return summary


# ----------------------------------------------------------------------------- run
@app.command()
def run(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model name"),
    text: Optional[str] = typer.Argument(None, help="text to speak (or --text-file)"),
    output: Path = typer.Option(
        ...,
        "-o",
        "--output",
        help="WAV file to write (written aside and renamed into place; never the registry, an export or the cache)",
    ),
    timestamps: Optional[Path] = typer.Option(
        None,
        "--timestamps",
        metavar="FILE",
        help="also write the words' (or, for models that predict no word durations, the text pieces') start and end "
        "times: .json, .srt or .vtt by the suffix, appended as each piece is spoken",
    ),
    asr: Optional[Path] = typer.Option(
        None,
        "--asr",
        metavar="DIR",
        help="with --timestamps, for models that predict no word durations: the words a local recogniser hears in "
        "each piece (faster-whisper model directory; zoo-tts\\[eval])",
    ),
    text_file: Optional[str] = typer.Option(
        None,
        "--text-file",
        metavar="PATH|-",
        help="read the text from a UTF-8 file, or standard input with -, instead of TEXT (for long texts)",
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto: the latest valid registered export, with CoreML on macOS and zoo's MIL interpreter elsewhere "
        "(torch when --weights/--random-weights is given); torch: the traceables (from --weights/--random-weights or "
        "the hub); mil: the registered export through zoo's MIL interpreter; coreml: the registered export through "
        "CoreML (macOS)",
    ),
    variant: Optional[str] = typer.Option(
        None, "--variant", help="variant \\[default: the model's default / the latest valid export]"
    ),
    checkpoint: Optional[str] = typer.Option(
        None,
        "--checkpoint",
        help="checkpoint (models that have several): the latest valid export of it, or its weights with --backend "
        "torch \\[default: the latest valid export / the model's default]",
    ),
    voice: Optional[str] = typer.Option(
        None, "--voice", help="voice name, or a WAV file where the model can clone voices"
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the sampling noise (and of --random-weights)"),
    settings: List[str] = typer.Option(
        [],
        "--set",
        help="plugin-specific run option KEY=VALUE (repeatable; `zoo info MODEL` lists each model's keys, types and "
        "ranges)",
    ),
    weights: Optional[Path] = typer.Option(None, "--weights", help="local weights for --backend torch"),
    random_weights: bool = typer.Option(
        False, "--random-weights", metavar="", help="seeded random weights for --backend torch"
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        metavar="",
        help="print one JSON object: frames, audio_seconds, wall_seconds, calls, calls_per_audio_second, "
        "first_audio_seconds, calls_before_first_audio",
    ),
) -> None:
    """Speak TEXT with MODEL through the plugin's run loop and write a 16-bit mono WAV.

    With --backend mil or coreml the registered export is checked first: a changed, missing or
    added file in it stops the run, naming the file (`zoo verify ID` says more).
    """
    from ..plugin.spec import RunOptions, UsageError
    from ..run.speak import execute, plan, read_text_file
    from ..runtime.backends import BACKENDS, BackendUnavailable

    if backend == "auto":
        import platform

        backend = (
            "torch"
            if (weights is not None or random_weights)
            else ("coreml" if platform.system() == "Darwin" else "mil")
        )
    if backend not in BACKENDS:
        _fail(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}", EXIT_USAGE)
    if (text is None) == (text_file is None):
        _fail(
            "give the text to speak either as TEXT or with --text-file PATH (- for standard input), not both"
            if text is not None
            else "give the text to speak: TEXT, or --text-file PATH (- for standard input)",
            EXIT_USAGE,
        )
    if text_file is not None:
        try:
            text = read_text_file(text_file)
        except UsageError as exc:
            _fail(str(exc), EXIT_USAGE)
    assert text is not None
    parsed = {}
    for item in settings:
        if "=" not in item or not item.split("=", 1)[0]:
            _fail(f"--set expects KEY=VALUE, got {item!r}", EXIT_USAGE)
        k, v = item.split("=", 1)
        parsed[k] = v
    spec = _model(ctx, model)
    source = _weights(weights, random_weights, seed)
    if source is not None and backend != "torch":
        _fail(
            "--weights/--random-weights only apply to --backend torch; other backends use the registered export",
            EXIT_USAGE,
        )
    registry = _registry_or_exit(ctx) if backend != "torch" else _state(ctx).registry()
    host = _state(ctx).host()
    try:  # everything checkable without loading a model: a bad value exits 2 before anything loads
        request = plan(
            host,
            spec.name,
            text,
            output,
            backend,
            registry,
            source,
            variant,
            RunOptions(voice=voice, seed=seed, settings=parsed),
            checkpoint,
            timestamps,
            asr,
        )
    except UsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except BackendUnavailable as exc:
        _fail(str(exc), EXIT_FAILED)
    try:
        with err.status(f"speaking with {spec.name} ({backend})…") as status:  # shown on a terminal only

            def progress(seconds: float) -> None:
                status.update(f"speaking with {spec.name} ({backend})… {seconds:.1f} s of audio written to {output}")

            summary = execute(host, request, registry, progress=None if as_json else progress)
    except (BackendUnavailable, ValueError, KeyError) as exc:
        _fail(str(exc).strip("'\""), EXIT_FAILED)
    data = summary.as_dict(output, spec.name)
    if as_json:
        print(json.dumps(data, indent=1))
    else:
        calls = ", ".join(f"{k}×{v}" for k, v in data["calls"].items())
        out.print(
            f"[green]✓[/] wrote {output}: {data['audio_seconds']:.2f} s of audio, {data['frames']} frames in "
            f"{data['wall_seconds']:.2f} s ({summary.source}); calls: {calls}"
        )
        if summary.timings is not None:
            kinds = sorted({t.kind for t in summary.timings})
            out.print(f"[green]✓[/] wrote {timestamps}: {len(summary.timings)} {'/'.join(kinds) or 'word'} timings")
        if summary.random_weights:
            err.print(
                "[yellow]! random weights: the model is the real architecture with seeded random weights, so the "
                "audio is noise-like, not speech[/]"
            )
    if summary.timings == [] and not as_json:
        err.print(
            f"[yellow]! {spec.name} reported no timings for this text (see `zoo info {spec.name}`); {timestamps} "
            "holds none[/]"
        )


# ---------------------------------------------------------------------------- eval
@app.command("eval")
def eval_cmd(
    ctx: typer.Context,
    key: str = typer.Argument(..., metavar="ID|MODEL", help="an export id, or a model (its latest valid export)"),
    asr: Optional[Path] = typer.Option(
        None,
        "--asr",
        metavar="DIR",
        help="a CTranslate2 Whisper model directory (faster-whisper; needs zoo-tts\\[eval])",
    ),
    prompts: Optional[Path] = typer.Option(
        None,
        "--prompts",
        metavar="FILE",
        help="your prompts, one a line, optionally LANG<TAB>TEXT \\[default: zoo's, per language]",
    ),
    lang: Optional[str] = typer.Option(
        None,
        "--lang",
        metavar="CODE",
        help="only this language (ISO 639-1, e.g. en) \\[default: every language the model speaks]",
    ),
    backend: str = typer.Option(
        "mil", "--backend", help="how the export is run: mil (zoo's interpreter), coreml (macOS) or torch"
    ),
    voice: Optional[str] = typer.Option(None, "--voice", help="voice \\[default: the model's]"),
    seed: int = typer.Option(0, "--seed", help="sampling seed, the same for export and reference"),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print one JSON object"),
) -> None:
    """Does the export still say the words? Speak prompts through it and the torch reference, transcribe both, score
    WER / CER and QoI.

    A compressed export is also compared with its uncompressed sibling when one is registered.
    The result is printed and recorded in the export's registry entry (`zoo info` shows it).
    An export made with random weights is run the same way but records no quality claim.
    """
    import tempfile

    from ..evaluation.evaluate import plan as plan_eval
    from ..evaluation.evaluate import run_eval
    from ..plugin.spec import UsageError
    from ..runtime.backends import BackendUnavailable

    state = _state(ctx)
    registry = _registry_or_exit(ctx, write=True)
    try:
        request = plan_eval(state.host(), registry, key, asr, prompts, lang, backend, voice, seed)
    except UsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except BackendUnavailable as exc:
        _fail(str(exc), EXIT_FAILED)
    entry = request.entry
    random_weights = (entry.get("weights") or {}).get("kind") == "random"
    if random_weights and not as_json:
        err.print(
            "[yellow]! random weights: this export's audio is not speech; the pipeline runs, but no WER, CER or QoI "
            "is recorded as a quality claim[/]"
        )
    rows: list[Any] = []
    with err.status(f"evaluating {entry['id']}…") as status:

        def progress(done: int, total: int, row: Any) -> None:
            rows.append(row)
            if not as_json:
                status.update(f"evaluating {entry['id']}… {done}/{total} prompts")

        def note(text: str) -> None:
            if not as_json:
                status.update(f"evaluating {entry['id']}… {text}")

        try:
            with tempfile.TemporaryDirectory(prefix="zoo-eval-") as tmp:
                result = run_eval(state.host(), registry, request, Path(tmp), progress, note)
        except (BackendUnavailable, ValueError, KeyError) as exc:
            _fail(str(exc).strip("'\""), EXIT_FAILED)
    registry.add_eval(entry["id"], result.record())
    if as_json:
        print(json.dumps(result.as_dict(), indent=1, default=str))
        return
    table = Table(
        title=f"zoo eval {entry['id']} ({request.backend}; {len(result.prompts)} prompts; recogniser "
        f"{request.recogniser.path.name})",
        title_justify="left",
    )
    table.add_column("prompt", overflow="ellipsis", no_wrap=True, max_width=44)
    table.add_column("lang")
    systems = ["reference", "export"] + (["uncompressed"] if result.sibling else [])
    for name in systems:
        table.add_column({"reference": "ref", "uncompressed": "uncomp"}.get(name, name), justify="right")
    table.add_column("Δ", justify="right")
    for row in result.prompts:
        rate = row.rate
        table.add_row(
            row.prompt.text,
            row.prompt.lang,
            *(f"{rate[s]:.2f}" for s in systems),
            f"{rate['export'] - rate['reference']:+.2f}",
        )
    out.print(table)
    if random_weights:
        out.print("random weights: no quality claim (the audio is not speech)")
        return
    summary = result.summary()
    for metric in ("wer", "cer"):
        if summary["export"][metric] is None:
            continue
        export, reference = summary["export"][metric], summary["reference"][metric]
        line = f"{metric.upper()}: export {export:.3f}, reference {reference:.3f} (Δ {export - reference:+.3f})"
        if result.sibling:
            uncompressed = summary["uncompressed"][metric]
            line += f", uncompressed {uncompressed:.3f} (Δ {export - uncompressed:+.3f})"
        out.print(line)
    out.print(
        f"QoI: {summary['qoi']:.2f} of prompts no worse than the reference"
        + (f", {summary['qoi_vs_uncompressed']:.2f} than the uncompressed export" if result.sibling else "")
    )


# ------------------------------------------------------------------------------ rm
@app.command()
def rm(
    ctx: typer.Context,
    export_ids: List[str] = typer.Argument(None, help="export ids to remove (see `zoo list`)"),
    older_duplicates: bool = typer.Option(
        False,
        "--older-duplicates",
        metavar="",
        help="remove every export that a newer one made from identical inputs duplicates",
    ),
    keep_files: bool = typer.Option(
        False,
        "--keep-files",
        metavar="",
        help="drop only the registry entry, touching no file (e.g. an export zoo cannot prove it placed)",
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print one JSON object"),
) -> None:
    """Remove exports: the files zoo placed for each, then its registry entry (under the registry lock).

    Only a directory zoo provably placed is touched: OUT/ID carrying zoo's marker, with no link
    leading out. In it, only the files the entry lists whose bytes are unchanged since the export
    are deleted; anything else (your files, edited files, links) is kept and named. An export that
    fails a rule is not removed, its entry kept, and the reason said (exit 1); --keep-files drops
    only the entry.
    """
    from ..registry.exportdir import Removal, delete_files, entry_path

    registry = _registry_or_exit(ctx, write=True)
    exports = registry.exports()
    ids = list(export_ids or [])
    if older_duplicates:
        newest: dict[str, dict[str, Any]] = {}
        for e in sorted(exports, key=lambda e: e["created_at"]):
            if e.get("inputs_sha256"):
                previous = newest.get(e["inputs_sha256"])
                if previous is not None:
                    ids.append(previous["id"])
                newest[e["inputs_sha256"]] = e
    if not ids and not older_duplicates:
        _fail("name the exports to remove (zoo rm ID ...), or --older-duplicates", EXIT_USAGE)
    unknown = [i for i in ids if i not in {e["id"] for e in exports}]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], [e["id"] for e in exports], n=1)
        _fail(
            f"no export {unknown[0]!r} in {registry.path}" + (f"; did you mean {close[0]!r}?" if close else ""),
            EXIT_USAGE,
        )
    results: dict[str, Removal] = {}

    def handle(entries: list[dict[str, Any]]) -> list[str]:
        """Under the registry lock: each export's files first; only the handled entries go."""
        done = []
        for e in entries:
            if keep_files:
                results[e["id"]] = Removal(e["id"], str(entry_path(registry, e)), files_untouched=True)
            else:
                try:
                    results[e["id"]] = delete_files(registry, e)
                except OSError as exc:
                    results[e["id"]] = Removal(
                        e["id"],
                        str(entry_path(registry, e)),
                        refused=f"{exc}; its entry is kept: `zoo rm {e['id']}` again finishes the job",
                    )
            if not results[e["id"]].refused:
                done.append(e["id"])
        return done

    removed = registry.remove(list(dict.fromkeys(ids)), handle) if ids else []
    refused = [r for r in results.values() if r.refused]
    if as_json:
        print(
            json.dumps(
                {
                    "removed": [e["id"] for e in removed],
                    "refused": {r.export_id: r.refused for r in refused},
                    "left_in_place": {r.export_id: [p for p, _ in r.kept] for r in results.values() if not r.refused},
                    "results": [r.as_dict() for r in results.values()],
                },
                indent=1,
            )
        )
    else:
        for r in results.values():
            if r.refused:
                err.print(f"[red]✗ {r.export_id} not removed (nothing deleted, entry kept):[/] {r.refused}")
                continue
            done = (
                "entry removed, files left untouched (--keep-files)"
                if r.files_untouched
                else f"{r.deleted} files deleted"
            )
            out.print(f"[green]✓[/] removed {r.export_id} ({r.directory}): {done}")
            for path, why in r.kept:
                err.print(f"[yellow]! kept {Path(r.directory) / path}: {why}[/]")
        if not results:
            out.print("nothing to remove")
    if refused:
        raise typer.Exit(EXIT_FAILED)


# ------------------------------------------------------------------------ new-plugin
@app.command("new-plugin")
def new_plugin(
    name: str = typer.Argument(
        ..., help="the model's name (lowercase, e.g. my_tts): the plugin is the package zoo_NAME"
    ),
    directory: Optional[Path] = typer.Option(None, "--dir", help="where to write the package \\[default: ./zoo-NAME]"),
) -> None:
    """Write an installable plugin package on zoo's skeleton, with a placeholder model.

    It runs end to end as written: `pip install -e DIR`, then `zoo list` shows it and
    `zoo export NAME --random-weights` exports it. Replace the placeholder file by file
    (the package's README lists each file's role); its tests run with `python -m pytest DIR/tests`.
    """
    from .scaffold import ScaffoldError
    from .scaffold import new_plugin as scaffold

    try:
        dest, written = scaffold(name, directory)
    except ScaffoldError as exc:
        _fail(str(exc), EXIT_USAGE)
    out.print(f"[green]✓[/] wrote plugin {name!r} into {dest}/ ({len(written)} files)")
    for rel in written:
        out.print(f"  {rel.as_posix()}")
    out.print(f"next: pip install -e {dest} && zoo list && zoo export {name} --random-weights")


def main() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # coremltools' per-pass progress bars: zoo shows its own
    if os.environ.get("ZOO_DEBUG"):
        app()
        return
    try:
        app()
    except Exception as exc:  # last resort: a clear line instead of a traceback
        from ..host.plugins import HookError

        if isinstance(exc, (HookError, RegistryError)):
            err.print(f"[red]✗ {exc}[/]")
        else:
            err.print(f"[red]✗ {type(exc).__name__}: {exc}[/] (set ZOO_DEBUG=1 for a traceback)")
        sys.exit(EXIT_FAILED)
