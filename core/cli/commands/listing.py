"""`zoo list`: the models plugins provide and the exports the registry holds."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from ...registry.store import RegistryError
from ..common import (
    EXIT_FAILED,
    LIST_ROWS,
    _print_orphans,
    _state,
    command,
    err,
    out,
)


@command("list")
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
        from ...export.publish import orphaned_exports

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
                        {k: getattr(e, k) for k in ("id", "model", "status", "validation_level", "created_at", "path")}
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
    from .. import describe

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
    table.add_column("id", no_wrap=True, min_width=max((len(e.id) for e in exports), default=2))
    for col in ("status", "level") if narrow else ("model", "variant", "status", "level", "created"):
        table.add_column(col, no_wrap=True)
    shown = sorted(exports, key=lambda e: e.created_at, reverse=True)
    hidden = 0 if show_all else max(0, len(shown) - LIST_ROWS)
    shown = shown[: len(shown) - hidden]
    for e in shown:
        status, level = e.status, e.validation_level or "-"
        table.add_row(e.id, status, level) if narrow else table.add_row(
            e.id, e.model, e.variant_name or "?", status, level, e.created_at
        )
    _print_orphans(orphans)
    if not exports:
        out.print(f"no exports in {state.registry().path} yet — try `zoo export MODEL --random-weights`")
    else:
        out.print(table)
        if hidden:
            out.print(f"… and {hidden} older exports (`zoo list --all` shows every one; `zoo info MODEL` a model's)")
