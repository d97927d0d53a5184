"""What every `zoo` command shares: the Typer app and its global options, the per-command state
(registry, plugin host), exit codes, consoles and the small argument helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

# coremltools' per-pass progress bars (tqdm, configured once at import) would drown zoo's own
import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from ..registry.store import ENV_VAR as REGISTRY_ENV  # noqa: E402
from ..registry.store import Registry, RegistryError  # noqa: E402


class _FlagHelp:
    """``--help`` is a flag: shown without a value type (typer would print ``<bool>`` beside it)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option


class ZooGroup(_FlagHelp, typer.core.TyperGroup):
    pass


class ZooCommand(_FlagHelp, typer.core.TyperCommand):
    pass


def command(name: Optional[str] = None) -> Any:
    """``@command("name")`` registers a `zoo` command on the app (its ``--help`` shown as a flag)."""
    return app.command(name, cls=ZooCommand)


app = typer.Typer(
    cls=ZooGroup,
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


def _print_orphans(orphans: list[str]) -> None:
    for path in orphans:
        err.print(
            f"[yellow]! orphaned export {path}: complete but never registered (its process was killed); the next `zoo "
            "export` into that directory removes it[/]"
        )
