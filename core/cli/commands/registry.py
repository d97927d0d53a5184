"""`zoo registry merge`: combine registries written on different machines or CI jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..common import EXIT_FAILED, EXIT_USAGE, ZooCommand, ZooGroup, _fail, _state, app, err, out

registry_app = typer.Typer(
    cls=ZooGroup,
    name="registry",
    help="Work on registry files themselves: `zoo registry merge` combines registries from several machines.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(registry_app)


@registry_app.command("merge", cls=ZooCommand)
def merge(
    ctx: typer.Context,
    others: List[Path] = typer.Argument(..., metavar="OTHER.toml...", help="the registries to merge in"),
    into: Optional[Path] = typer.Option(
        None, "--into", help="the registry to merge into \\[default: the one --registry / ZOO_REGISTRY names]"
    ),
    no_verify: bool = typer.Option(
        False, "--no-verify", metavar="", help="check each export's directory and marker, but hash no file"
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print one JSON object"),
) -> None:
    """Merge registries written elsewhere (other machines, CI jobs) into one. Every export keeps its
    files where they are (its directory must exist, carry zoo's marker and, unless --no-verify, hash
    as its entry says); its path is rewritten relative to the target. An export already in the target,
    or in an earlier source, with the same inputs (or id and directory) appears once; one id naming
    two different exports refuses the whole merge, naming both sources (exit 1, the target unchanged).
    The target is written once, under its lock, atomically.
    """
    from ...registry.merge import merge as run_merge
    from ...registry.store import Registry, RegistryError

    target = Registry(into) if into is not None else _state(ctx).registry()
    missing = [str(p) for p in others if not Path(p).is_file()]
    if missing:
        _fail(f"no registry file {missing[0]}", EXIT_USAGE)
    try:
        target.read()
        target.check_writable()
        with err.status("merging…") as status:
            result = run_merge(target, list(others), not no_verify, lambda s: status.update(f"merging… {s}"))
    except RegistryError as exc:
        _fail(str(exc), EXIT_FAILED)
    if as_json:
        print(json.dumps({"into": str(target.path), **result.as_dict()}, indent=1))
        return
    for export_id, source in result.added:
        out.print(f"[green]+[/] {export_id}  (from {source})")
    for export_id, kept, source in result.duplicates:
        out.print(f"[dim]= {export_id} (from {source}) is already there as {kept}[/]")
    out.print(
        f"[green]✓[/] merged {len(others)} registr{'y' if len(others) == 1 else 'ies'} into {target.path}: "
        f"{len(result.added)} added, {len(result.duplicates)} already there"
    )
