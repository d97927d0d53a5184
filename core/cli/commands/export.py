"""`zoo export`: export, validate and register one variant of a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..common import (
    EXIT_FAILED,
    EXIT_USAGE,
    _fail,
    _model,
    _registry_or_exit,
    _state,
    _weights,
    command,
    err,
    out,
)


@command()
def export(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="MODEL", help="model name (see `zoo list`)"),
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
    from ...export.cache import StageCache
    from ...export.pipeline import Exporter
    from ...export.report import ExportFailed, RichReporter, print_report

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
