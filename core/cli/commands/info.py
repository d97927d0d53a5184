"""`zoo info`: one model's variants, components, tolerances and exports."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from ...registry.entry import ExportEntry
from ...registry.store import RegistryError
from ..common import (
    EXIT_FAILED,
    EXIT_USAGE,
    State,
    _fail,
    _model,
    _state,
    command,
    err,
    out,
)


def model_data(
    spec: Any, plugin: Any, exports: list[ExportEntry], voices: list[str] | None, registry_error: str | None
) -> dict[str, Any]:
    """What `zoo info` describes (and `--json` prints): the model's declaration, its exports and the
    latest export's voices; the command only prints it."""
    data = {
        "model": spec.name,
        "summary": spec.summary,
        "plugin": {"name": plugin.name, "version": plugin.version, "hooks": plugin.hooks},
        "hub": {"repo": spec.hub_repo, "revision": spec.revision},
        "sample_rate": spec.sample_rate,
        "input": spec.input,
        "output": spec.output,
        "required_level": spec.required_level,
        "default_variant": spec.default_variant,
        "variants": {name: v.as_record() | {"description": v.description} for name, v in spec.variants.items()},
        "default_checkpoint": spec.default_checkpoint or None,
        "checkpoints": {
            name: {
                "description": c.description,
                "family": c.family,
                "hub": {"repo": c.hub_repo, "revision": c.revision},
                "source": c.source,
                **({"unsupported": c.unsupported} if c.unsupported else {}),
            }
            for name, c in spec.checkpoints.items()
        },
        "components": [
            {
                "name": c.name,
                "description": c.description,
                "functions": list(c.functions),
                "tolerances": {p: _tolerance_summary(spec, c.name, p) for p in ("fp32", "fp16")},
                **(
                    {"uncompressed": list(c.uncompressed), "uncompressed_reason": c.uncompressed_reason}
                    if c.uncompressed
                    else {}
                ),
            }
            for c in spec.components
        ],
        "exports": [
            {**{k: getattr(e, k) for k in ("id", "status", "validation_level", "created_at")}, "eval": e.eval}
            for e in exports
        ],
    }
    data["run_settings"] = [
        {
            "name": s.name,
            "type": s.type.__name__,
            "default": s.default,
            "min": s.min,
            "max": s.max,
            "above": s.above,
            "help": s.help,
            "accepts": s.describe(),
        }
        for s in spec.run_settings
    ]
    data["clones_voices"] = spec.clones_voices
    if spec.compressed_loop is not None:
        loop = spec.compressed_loop
        data["compressed_loop"] = {
            "text": loop.text,
            "frames_max_delta": loop.frames_max_delta,
            "spectral_factor": loop.spectral_factor,
            "settings": dict(loop.settings),
            "basis": loop.basis,
        }
    if spec.compressed_constants:
        data["compressed_constants"] = {name: list(t) for name, t in spec.compressed_constants.items()}
    data["voices"] = voices
    if registry_error:
        data["registry_error"] = registry_error
    return data


@command()
def info(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="MODEL", help="model name (see `zoo list`)"),
    checkpoint: Optional[str] = typer.Option(
        None, "--checkpoint", help="only this checkpoint's exports and voices (models that have several)"
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print the description as JSON"),
) -> None:
    """Describe MODEL: plugin, checkpoints, variants, components, tolerances, weights and its exports."""
    from ...host.session import checkpoint_name

    state = _state(ctx)
    spec = _model(ctx, model)
    if checkpoint is not None:
        try:
            checkpoint_name(spec, checkpoint)  # described even when it cannot be exported (the table says why)
        except ValueError as exc:
            _fail(str(exc), EXIT_USAGE)
    plugin = state.host().plugin_info(spec)
    registry_error = None
    try:
        exports = list(state.registry().find(spec.name))
    except RegistryError as exc:
        exports, registry_error = [], str(exc)
    if checkpoint is not None:
        exports = [e for e in exports if e.checkpoint(spec.default_checkpoint) == checkpoint]
    data = model_data(spec, plugin, exports, _latest_voices(state, spec, checkpoint), registry_error)
    if as_json:
        print(json.dumps(data, indent=1))
        if registry_error:
            raise typer.Exit(EXIT_FAILED)
        return
    out.print(f"[bold]{spec.name}[/] — {spec.summary}")
    out.print(f"plugin {plugin.name} {plugin.version}; {spec.sample_rate} Hz; required level: {spec.required_level}")
    out.print(f"weights: {spec.hub_repo or '(no hub repo)'}@{spec.revision or '-'}")
    if (spec.input, spec.output) != ("text", "audio"):
        from ...plugin.names import OUTPUT_SUFFIXES

        takes = "a voice recording (zoo run MODEL --voice FILE.wav)" if spec.input == "voice" else "text"
        out.print(
            f"input: {takes}; output: {spec.output} (-o {' or '.join(OUTPUT_SUFFIXES[spec.output])}; cached per "
            "recording and export, --no-cache runs it)"
            if spec.output != "audio"
            else f"input: {takes}; output: audio (-o FILE.wav)"
        )
    out.print(f"hooks: {', '.join(h for h in plugin.hooks if h != 'zoo_register_models')}")
    from ...plugin.names import COMPRESSION_SUMMARIES
    from .. import describe

    for block in describe.variants(spec, COMPRESSION_SUMMARIES):
        out.print(block)
    if spec.checkpoints:
        out.print(describe.checkpoints(spec))
    out.print(describe.components(data["components"]))
    if spec.compressed_loop is not None:
        out.print(f"compressed variants' whole loop vs uncompressed: {spec.compressed_loop.basis}")
    if spec.compressed_constants:
        stored = ", ".join(f"{name}: {', '.join(t)}" for name, t in spec.compressed_constants.items())
        out.print(f"compressed variants store these constants as look-up tables: {stored}")
    if spec.run_settings:
        out.print(describe.run_settings(spec.run_settings))
    if data["voices"] is not None:
        clone = "; or --voice FILE.wav to clone a voice" if spec.clones_voices else ""
        out.print(f"voices of the latest export: {', '.join(data['voices']) or '(none)'}{clone}")
    out.print(f"{len(exports)} export(s) registered" + (f"; latest: {exports[-1].id}" if exports else ""))
    for e in exports:
        for row in e.eval:
            out.print(f"zoo eval of {e.id}: {_eval_line(row)}")
    if registry_error:
        err.print(f"[red]✗ {registry_error}[/]")
        raise typer.Exit(EXIT_FAILED)


def _eval_line(row: dict[str, Any]) -> str:
    """One recorded ``zoo eval`` as a line: its figures, or why it makes no claim."""
    what = f"{row.get('prompts', '?')} prompts ({', '.join(row.get('languages', []))}), {row.get('backend', '?')}"
    if not row.get("quality_claim"):
        return f"{what}: {row.get('note', 'no quality claim')}"
    figures = [
        f"{k.replace('_', ' ').upper() if k.endswith(('wer', 'cer')) else k} {row[k]:.3f}"
        for k in (
            "export_wer",
            "reference_wer",
            "uncompressed_wer",
            "export_cer",
            "reference_cer",
            "uncompressed_cer",
            "qoi",
            "qoi_vs_uncompressed",
        )
        if k in row
    ]
    return f"{what}: " + ", ".join(figures)


def _latest_voices(state: "State", spec: Any, checkpoint: str | None = None) -> list[str] | None:
    """The voices of the model's latest valid export (of ``checkpoint``; None: no export, or no named voices)."""
    from ...run.speak import export_voices

    try:
        registry = state.registry()
        entry = registry.latest_valid(spec.name, checkpoint, spec.default_checkpoint)
        return None if entry is None else export_voices(state.host(), spec, registry, entry)
    except Exception:  # noqa: BLE001 - a description never fails on a damaged export (zoo verify reports it)
        return None


def _tolerance_summary(spec: Any, component: str, precision: str) -> dict[str, Any]:
    """The reference-level thresholds, plus the levels whose thresholds differ."""
    base = spec.tolerance(component, precision)
    summary: dict[str, Any] = dict(base.checks())
    from ...validation.levels import PACKAGE_LEVELS

    for level in PACKAGE_LEVELS:
        other = spec.tolerance(component, precision, level.name)
        if other != base:
            summary[level.name] = other.checks()
    return summary
