"""`zoo verify`: re-check registered exports' files and, on request, re-run their parity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..common import (
    EXIT_FAILED,
    EXIT_USAGE,
    _fail,
    _print_orphans,
    _registry_or_exit,
    _state,
    command,
    err,
    out,
)


@command()
def verify(
    ctx: typer.Context,
    key: str = typer.Argument(
        "",
        metavar="MODEL|ID|DIR",
        help="only exports of this model, or this export id; or a folder `zoo publish` wrote, checked on its own "
        "against its manifest (no registry)",
    ),
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

    Given a folder `zoo publish` wrote, check it alone: every file its manifest lists is there with its
    size and sha256, and nothing else is (exit 1 naming each difference); with --execute, also run each
    package on the parity inputs the folder carries, judged by the thresholds its manifest records.

    With --execute, each intact package is also executed on its recorded parity
    inputs and compared with the recorded torch outputs, against the thresholds
    the export was judged by.
    """
    from ...registry.verify import verify as run_verify

    if key and Path(key).is_dir():
        _verify_folder(Path(key), execute, as_json)
        return
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
    from ...export.publish import orphaned_exports

    orphans = [str(p) for p in orphaned_exports(registry)]
    if as_json:
        print(
            json.dumps(
                {
                    "checked": [e.id for e in entries],
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
            if e.id not in bad:
                ran = " and execute within thresholds" if execute else ""
                out.print(
                    f"[green]✓[/] {e.id}: {len(e.components)} components, {len(e.constants)} constants match{ran}"
                )
        for p in problems:
            what = "" if p.kind == "export" else f"{p.kind} {p.name!r}: "
            out.print(f"[red]✗[/] {p.export_id}: {what}{p.message}")
        if not entries:
            out.print(f"no exports in {registry.path}")
        _print_orphans(orphans)
    if problems:
        raise typer.Exit(EXIT_FAILED)


def _verify_folder(folder: Path, execute: bool, as_json: bool) -> None:
    from ...release.folder import execute_folder, read_manifest, verify_folder
    from ...release.manifest import ManifestError

    executed: list = []
    try:
        with err.status("verifying…") as status:
            data = read_manifest(folder)  # once, for both checks

            def progress(step: str) -> None:
                status.update(f"verifying… {step}")

            problems = verify_folder(folder, progress, data)
            if execute:
                ran, executed = execute_folder(folder, {p.path for p in problems}, progress, data)
                problems += ran
    except ManifestError as exc:
        _fail(str(exc), EXIT_FAILED)
    if as_json:
        report = {"folder": str(folder), "ok": not problems, "problems": [vars(p) for p in problems]}
        print(json.dumps({**report, "executed": executed}, indent=1))
    else:
        for p in problems:
            out.print(f"[red]✗[/] {folder}: {p.path} {p.message}")
        if not problems:
            ran_text = f"; {len(executed)} parity checks executed within thresholds" if execute else ""
            out.print(f"[green]✓[/] {folder}: every file matches its manifest, and nothing else is there{ran_text}")
    if problems:
        raise typer.Exit(EXIT_FAILED)
