"""`zoo rm`: remove registered exports (only the files zoo made and listed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer

from ...registry.entry import ExportEntry
from ..common import (
    EXIT_FAILED,
    EXIT_USAGE,
    _fail,
    _registry_or_exit,
    command,
    err,
    out,
)


@command()
def rm(
    ctx: typer.Context,
    export_ids: List[str] = typer.Argument(None, metavar="ID", help="export ids to remove (see `zoo list`)"),
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
    from ...registry.exportdir import Removal, delete_files, entry_path

    registry = _registry_or_exit(ctx, write=True)
    exports = registry.exports()
    ids = list(export_ids or [])
    if older_duplicates:
        newest: dict[str, ExportEntry] = {}
        for e in sorted(exports, key=lambda e: e.created_at):
            if e.inputs_sha256:
                previous = newest.get(e.inputs_sha256)
                if previous is not None:
                    ids.append(previous.id)
                newest[e.inputs_sha256] = e
    if not ids and not older_duplicates:
        _fail("name the exports to remove (zoo rm ID ...), or --older-duplicates", EXIT_USAGE)
    unknown = [i for i in ids if i not in {e.id for e in exports}]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], [e.id for e in exports], n=1)
        _fail(
            f"no export {unknown[0]!r} in {registry.path}" + (f"; did you mean {close[0]!r}?" if close else ""),
            EXIT_USAGE,
        )
    results: dict[str, Removal] = {}

    def handle(entries: list[ExportEntry]) -> list[str]:
        """Under the registry lock: each export's files first; only the handled entries go."""
        done = []
        for e in entries:
            if keep_files:
                results[e.id] = Removal(e.id, str(entry_path(registry, e)), files_untouched=True)
            else:
                try:
                    results[e.id] = delete_files(registry, e)
                except OSError as exc:
                    results[e.id] = Removal(
                        e.id,
                        str(entry_path(registry, e)),
                        refused=f"{exc}; its entry is kept: `zoo rm {e.id}` again finishes the job",
                    )
            if not results[e.id].refused:
                done.append(e.id)
        return done

    removed = registry.remove(list(dict.fromkeys(ids)), handle) if ids else []
    refused = [r for r in results.values() if r.refused]
    if as_json:
        print(
            json.dumps(
                {
                    "removed": [e.id for e in removed],
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
