"""How `zoo list` and `zoo info` lay out what the commands gathered, to read at 80 columns (a
newcomer's terminal, CI logs): short cells; long text (summaries, descriptions) on a row of its
own under the thing it describes; a variant's options as rows of an options set, never JSON in
a cell. The commands build the data; this module only lays it out."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from rich import box
from rich.table import Table

#: a model, variant or component's long text sits on its own rows, indented under its name
INDENT = "  "
#: long text is wrapped to this many columns, one row a line: at 80 columns no cell wraps again
#: (the widest first column, a checkpoint's name, leaves about 48)
TEXT_WIDTH = 46


def _text(table: Table, text: str, label: str = "") -> None:
    """``text`` as rows of ``table``'s second column, ``label`` beside the first."""
    import textwrap

    for i, line in enumerate(textwrap.wrap(text, TEXT_WIDTH, break_on_hyphens=False) or [""]):
        table.add_row(label if i == 0 else "", line)


def _kv_table(title: str | None = None) -> Table:
    """Two borderless columns: a name, and what it is (rows of text under it for long text)."""
    table = Table(title=title, title_justify="left", box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    return table


def plugins(infos: Iterable[Any]) -> Table:
    """One row per plugin: name, version, status, models and how many hooks it implements."""
    table = Table(title="plugins", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("plugin", "version", "status", "models", "hooks"):
        table.add_column(col, overflow="fold")
    for info in infos:
        status = "[green]✓ loaded[/]" if info.ok else f"[red]✗ {info.error}[/]"
        hooks = [h for h in info.hooks if h != "zoo_register_models"]
        table.add_row(info.name, info.version, status, ", ".join(info.models), str(len(hooks)))
    return table


def models(specs: Iterable[Any]) -> Table:
    """Each model: its plugin, default variant and components on its row, its summary under it."""
    table = _kv_table("models")
    for m in specs:
        components = ", ".join(c.name for c in m.components)
        _text(table, f"plugin {m.plugin}; default {m.default_variant}; {components}", f"[bold]{m.name}[/]")
        _text(table, m.summary)
    return table


def _option_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, Mapping):
        return "; ".join(f"{k} {_option_value(v)}" for k, v in value.items()) or "(none)"
    return str(value)


def variants(spec: Any, compression_summary: Mapping[str, str]) -> list[Any]:
    """The variants as a table (precision, target, their options set, what the weights are), then
    each options set as rows and each base variant's description on a line of its own."""
    sets: list[dict[str, Any]] = []
    members: list[list[str]] = []
    table = Table(
        title="variants (zoo export --variant NAME)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for col in ("variant", "precision", "target", "options", "weights"):
        table.add_column(col, overflow="fold")
    for name, v in spec.variants.items():
        shown = {k: x for k, x in v.options.items() if k != "checkpoint"}  # checkpoints: their own table
        if shown not in sets:
            sets.append(shown)
            members.append([])
        index = sets.index(shown)
        members[index].append(name)
        weights = compression_summary.get(v.compression, v.compression) if v.compression != "none" else "as converted"
        table.add_row(
            name + (" (default)" if name == spec.default_variant else ""),
            v.precision,
            v.target,
            chr(ord("A") + index),
            weights,
        )
    out: list[Any] = [table]
    keys = list(dict.fromkeys(k for options in sets for k in options))
    if keys:
        grid = Table(
            title="options (by the variants' letter)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
        )
        grid.add_column("option", no_wrap=True)
        for index in range(len(sets)):
            grid.add_column(chr(ord("A") + index), overflow="fold")
        for key in keys:
            grid.add_row(key, *(_option_value(options[key]) if key in options else "-" for options in sets))
        out.append(grid)
    described = _kv_table("what the variants are")
    for name, v in spec.variants.items():
        if v.compression == "none" and v.description:
            _text(described, v.description, INDENT + name)
    out.append(described)
    return out


def checkpoints(spec: Any) -> Table:
    table = _kv_table("checkpoints (--checkpoint NAME)")
    for name, c in spec.checkpoints.items():
        label = name + (" (default)" if name == spec.default_checkpoint else "")
        table.add_row(INDENT + label, f"{c.family}; revision {(c.revision or '-')[:12]}")
        if c.description:
            _text(table, c.description)
        if c.unsupported:
            _text(table, f"not exportable: {c.unsupported}")
    return table


def tolerance_text(tolerances: Mapping[str, Any]) -> str:
    """``{"rel": 1e-3, "mil": {"cosine_min": 0.999}}`` as ``rel 0.001; mil: cosine_min 0.999``."""
    plain = [
        f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
        for k, v in tolerances.items()
        if not isinstance(v, Mapping)
    ]
    levels = [f"{k}: {tolerance_text(v)}" for k, v in tolerances.items() if isinstance(v, Mapping)]
    return "; ".join([", ".join(plain)] + levels if plain else levels)


def components(rows: Iterable[Mapping[str, Any]]) -> Table:
    """Each component: its functions, what it does, and its bounds per precision, one row each."""
    table = _kv_table("components")
    for c in rows:
        functions = c["functions"]
        shown = ", ".join(functions[:4]) + (f", … ({len(functions)} functions)" if len(functions) > 4 else "")
        _text(table, shown, f"[bold]{c['name']}[/]")
        _text(table, c["description"])
        for precision in ("fp32", "fp16"):
            _text(table, tolerance_text(c["tolerances"][precision]), INDENT + f"{precision} bounds")
        if c.get("uncompressed"):
            kept = f"uncompressed in compressed variants: {', '.join(c['uncompressed'])} ({c['uncompressed_reason']})"
            _text(table, kept, INDENT + "kept")
    return table


def run_settings(settings: Iterable[Any]) -> Table:
    """Each ``zoo run --set`` option: what it accepts on its row, what it does under it."""
    table = _kv_table("run options (zoo run --set NAME=VALUE)")
    for s in settings:
        _text(table, s.describe(), INDENT + s.name)
        _text(table, s.help)
    return table
