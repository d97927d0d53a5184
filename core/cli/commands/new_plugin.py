"""`zoo new-plugin`: scaffold a model plugin on the skeleton."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..common import (
    EXIT_USAGE,
    _fail,
    command,
    out,
)


@command("new-plugin")
def new_plugin(
    name: str = typer.Argument(
        ..., metavar="NAME", help="the model's name (lowercase, e.g. my_tts): the plugin is the package zoo_NAME"
    ),
    directory: Optional[Path] = typer.Option(None, "--dir", help="where to write the package \\[default: ./zoo-NAME]"),
) -> None:
    """Write an installable plugin package on zoo's skeleton, with a placeholder model.

    It runs end to end as written: `pip install -e DIR`, then `zoo list` shows it and
    `zoo export NAME --random-weights` exports it. Replace the placeholder file by file
    (the package's README lists each file's role); its tests run with `python -m pytest DIR/tests`.
    """
    from ..scaffold import ScaffoldError
    from ..scaffold import new_plugin as scaffold

    try:
        dest, written = scaffold(name, directory)
    except ScaffoldError as exc:
        _fail(str(exc), EXIT_USAGE)
    out.print(f"[green]✓[/] wrote plugin {name!r} into {dest}/ ({len(written)} files)")
    for rel in written:
        out.print(f"  {rel.as_posix()}")
    out.print(f"next: pip install -e {dest} && zoo list && zoo export {name} --random-weights")
