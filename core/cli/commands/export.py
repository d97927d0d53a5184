"""`zoo export`: export, validate and register one variant of a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

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
    variant: Optional[str] = typer.Option(
        None,
        "--variant",
        help="variant to export, or several (V1,V2) or `all`: a matrix \\[default: the model's default]",
    ),
    checkpoint: Optional[str] = typer.Option(
        None,
        "--checkpoint",
        help="released checkpoint (language, size) for models that have several, or several (A,B) or `all`: a "
        "matrix; `zoo info MODEL` lists them \\[default: the model's default]",
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
    jobs: int = typer.Option(
        1, "-j", "--jobs", min=1, help="export a matrix's cells in this many local worker processes"
    ),
    ray: Optional[str] = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        help="run each cell as a Ray task: `local` starts a cluster on this machine, `auto` or HOST:PORT joins "
        "one (zoo-tts\\[ray])",
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

    if ray is not None:  # said before anything loads
        from importlib.util import find_spec

        if find_spec("ray") is None:
            _fail("--ray needs Ray: pip install 'zoo-tts\\[ray]'", EXIT_USAGE)  # rich markup: \\[ is a bracket
    state = _state(ctx)
    spec = _model(ctx, model)
    source = _weights(weights, random_weights, seed)
    if out_dir.exists() and not out_dir.is_dir():
        _fail(f"--out {out_dir} is a file; give the directory exports are placed in", EXIT_USAGE)
    registry = _registry_or_exit(ctx, write=True)
    several = any(v is not None and ("," in v or v == "all") for v in (variant, checkpoint))
    if several or jobs > 1 or ray is not None:
        if asr is not None:
            _fail("--asr goes with one export, not a matrix", EXIT_USAGE)
        _matrix(state, spec, variant, checkpoint, source, out_dir, registry, cache, force, jobs, ray, as_json)
        return
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


def _matrix(
    state: Any,
    spec: Any,
    variants: Optional[str],
    checkpoints: Optional[str],
    source: Any,
    out_dir: Path,
    registry: Any,
    cache: Optional[Path],
    force: bool,
    jobs: int,
    ray: Optional[str],
    as_json: bool,
) -> None:
    """`zoo export` of several cells (checkpoint × variant) on -j workers or Ray; the registry
    written by this process only, as each cell finishes; a table of every cell at the end."""
    from ...export import matrix
    from ...export.cache import StageCache
    from ...plugin.errors import UsageError

    try:
        cells, skipped = matrix.plan_cells(spec, checkpoints, variants)
    except UsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    root = StageCache(cache).root
    jobs_list = [
        matrix.Job(cell, source, str(out_dir.resolve()), str(root.resolve()), str(registry.path.resolve()), force)
        for cell in cells
    ]
    parallel = jobs if ray is None else max(jobs, len(jobs_list))
    if ray is not None:
        engine: matrix.Engine = matrix.RayEngine(
            ray, lambda job: (1.0, matrix.memory_request(registry, spec, job.cell))
        )
    else:
        engine = matrix.LocalEngine(jobs)
    outcomes = list(skipped)
    try:
        with err.status(f"exporting {len(jobs_list)} cells…") as status:

            def said(outcome: matrix.Outcome) -> None:
                if not as_json:
                    mark = {"registered": "[green]✓[/]", "reused": "[green]=[/]"}.get(outcome.status, "[red]✗[/]")
                    err.print(f"{mark} {outcome.cell.name}: {outcome.status} {outcome.reason}".rstrip())

            outcomes += matrix.run_matrix(
                jobs_list,
                engine,
                registry,
                lambda p: status.update(f"exporting: {p.line()}"),
                said,
                parallel,
            )
    except KeyboardInterrupt:
        err.print("[red]✗ interrupted: every finished cell is registered; the same command resumes[/]")
        raise typer.Exit(130) from None
    result = matrix.summary(outcomes)
    if as_json:
        print(json.dumps(result, indent=1))
    else:
        from rich.table import Table

        table = Table("cell", "status", "seconds", "peak MB", "MB", "level", "export or reason")
        for o in outcomes:
            table.add_row(
                o.cell.name,
                o.status,
                f"{o.seconds:.0f}",
                f"{o.peak_rss_mb:.0f}",
                f"{o.bytes / 1e6:.1f}",
                o.level or "-",
                o.export_id or o.reason,
            )
        out.print(table)
    if not result["ok"]:
        raise typer.Exit(EXIT_FAILED)
