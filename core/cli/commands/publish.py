"""`zoo publish`: a registered export as a folder to ship, with its manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..common import EXIT_FAILED, EXIT_USAGE, _fail, _registry_or_exit, _state, command, err, out


@command()
def publish(
    ctx: typer.Context,
    key: str = typer.Argument(..., metavar="ID", help="the export to publish (`zoo list` shows the ids)"),
    directory: Optional[Path] = typer.Option(
        None, "--dir", help="the folder to write (new, or empty) \\[default: published/ID]"
    ),
    push: Optional[str] = typer.Option(
        None, "--push", metavar="REPO_ID", help="then upload the folder to this Hugging Face repository, one commit"
    ),
    revision: Optional[str] = typer.Option(None, "--revision", help="with --push: the branch to commit to"),
    private: bool = typer.Option(False, "--private", metavar="", help="with --push: create the repository private"),
    dry_run: bool = typer.Option(
        False, "--dry-run", metavar="", help="with --push: list every file the upload would send, with its size"
    ),
    allow_random: bool = typer.Option(
        False,
        "--allow-random-weights",
        metavar="",
        help="with --push: upload an export made with random weights (refused otherwise: it is no usable model)",
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print the manifest as one JSON object"),
) -> None:
    """Copy an export's packages and constants into a new folder with a model card (README.md, every
    figure from the registry) and manifest.json: each package's
    functions, inputs, outputs and states as its CoreML specification declares them, the deployment
    target it needs (checked against its variant's), each constants file's arrays, the loop contract (what
    a native app implements around the packages, from the plugin), and every file's size and sha256.
    A --dir inside an export's directory or zoo's cache is refused. The export is verified first; the
    folder is built aside and renamed into place. `zoo verify DIR` checks such a folder on its own.
    """
    from .... import __version__
    from ...host.plugins import HookError
    from ...plugin.errors import UsageError
    from ...release.folder import PublishError, default_dir
    from ...release.folder import publish as run_publish
    from ...release.manifest import ManifestError

    registry = _registry_or_exit(ctx)
    entry = next((e for e in registry.exports() if e.id == key), None)
    if entry is None:
        _fail(f"no export {key!r} in {registry.path} (see `zoo list`)", EXIT_USAGE)
    assert entry is not None
    if push is None and (revision or private or dry_run or allow_random):
        _fail("--revision, --private, --dry-run and --allow-random-weights go with --push REPO_ID", EXIT_USAGE)
    if push is not None and entry.random_weights and not allow_random:
        _fail(
            f"export {entry.id} was made with random weights: it is no usable model, so it is not pushed "
            "(--allow-random-weights pushes it anyway, banner and all)",
            EXIT_USAGE,
        )
    dest = directory if directory is not None else default_dir(entry)
    host = _state(ctx).host()
    spec = host.models.get(entry.model)  # None when its plugin is not installed: the card then says less

    def describe_loop(constants: dict[str, Path]) -> object:
        return host.call(spec, "loop_contract", constants=constants) if spec is not None else None

    try:
        with err.status(f"publishing {entry.id}…") as status:
            manifest = run_publish(
                registry, entry, dest, __version__, spec, lambda s: status.update(f"publishing… {s}"), describe_loop
            )
    except UsageError as exc:  # a --dir zoo will not write: said before anything is copied
        _fail(str(exc), EXIT_USAGE)
    except (PublishError, ManifestError, HookError, OSError) as exc:
        _fail(f"{exc}; nothing was published" if isinstance(exc, HookError) else str(exc), EXIT_FAILED)
    if manifest["weights"]["random"]:  # on stderr: said with --json too
        err.print("[yellow]! made with seeded random weights: the packages run, but they are no usable model[/]")
    if push is not None:
        _push(dest, manifest, push, revision, private, dry_run, as_json)
    if as_json:
        print(json.dumps(manifest, indent=1))
        return
    size = sum(f["bytes"] for f in manifest["files"])
    out.print(
        f"[green]✓[/] published {entry.id} into {dest}: {len(manifest['packages'])} package(s), "
        f"{len(manifest['constants'])} constants file(s), {len(manifest['files'])} files, {size / 1e6:.1f} MB; "
        f"manifest.json (schema {manifest['schema_version']})"
    )


def _push(
    folder: Path, manifest: dict, repo: str, revision: Optional[str], private: bool, dry_run: bool, quiet: bool
) -> None:
    from ...release import push as hub

    if dry_run:
        files = hub.plan(folder, manifest)
        for path, size in files:
            err.print(f"  {size:>12,d}  {path}")
        err.print(f"would upload {len(files)} files, {sum(s for _, s in files) / 1e6:.1f} MB, to {repo} (--dry-run)")
        return
    try:
        url = hub.push(folder, manifest, repo, revision, private)
    except hub.PushError as exc:
        _fail(f"{exc} (the folder stays in {folder})", EXIT_FAILED)
    if not quiet:
        out.print(f"[green]✓[/] pushed {folder} to {repo}: {url}")
