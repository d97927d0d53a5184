"""`zoo eval`: ASR-scored evaluation of an export (WER/CER, QoI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..common import (
    EXIT_FAILED,
    EXIT_USAGE,
    _fail,
    _registry_or_exit,
    _state,
    command,
    err,
    out,
)


@command("eval")
def eval_cmd(
    ctx: typer.Context,
    key: str = typer.Argument(..., metavar="ID|MODEL", help="an export id, or a model (its latest valid export)"),
    asr: Optional[Path] = typer.Option(
        None,
        "--asr",
        metavar="DIR",
        help="a CTranslate2 Whisper model directory (faster-whisper; needs zoo-tts\\[eval])",
    ),
    prompts: Optional[Path] = typer.Option(
        None,
        "--prompts",
        metavar="FILE",
        help="your prompts, one a line, optionally LANG<TAB>TEXT \\[default: zoo's, per language]",
    ),
    lang: Optional[str] = typer.Option(
        None,
        "--lang",
        metavar="CODE",
        help="only this language (ISO 639-1, e.g. en) \\[default: every language the model speaks]",
    ),
    backend: str = typer.Option(
        "mil", "--backend", help="how the export is run: mil (zoo's interpreter), coreml (macOS) or torch"
    ),
    voice: Optional[str] = typer.Option(None, "--voice", help="voice \\[default: the model's]"),
    seed: int = typer.Option(0, "--seed", help="sampling seed, the same for export and reference"),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print one JSON object"),
) -> None:
    """Does the export still say the words? Speak prompts through it and the torch reference, transcribe both, score
    WER / CER and QoI.

    A compressed export is also compared with its uncompressed sibling when one is registered.
    The result is printed and recorded in the export's registry entry (`zoo info` shows it).
    An export made with random weights is run the same way but records no quality claim.
    """
    import tempfile

    from ...evaluation.evaluate import plan as plan_eval
    from ...evaluation.evaluate import run_eval
    from ...plugin.errors import UsageError
    from ...runtime.backends import BackendUnavailable

    state = _state(ctx)
    registry = _registry_or_exit(ctx, write=True)
    try:
        request = plan_eval(state.host(), registry, key, asr, prompts, lang, backend, voice, seed)
    except UsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except BackendUnavailable as exc:
        _fail(str(exc), EXIT_FAILED)
    entry = request.entry
    random_weights = entry.random_weights
    if random_weights and not as_json:
        err.print(
            "[yellow]! random weights: this export's audio is not speech; the pipeline runs, but no WER, CER or QoI "
            "is recorded as a quality claim[/]"
        )
    rows: list[Any] = []
    with err.status(f"evaluating {entry.id}…") as status:

        def progress(done: int, total: int, row: Any) -> None:
            rows.append(row)
            if not as_json:
                status.update(f"evaluating {entry.id}… {done}/{total} prompts")

        def note(text: str) -> None:
            if not as_json:
                status.update(f"evaluating {entry.id}… {text}")

        try:
            with tempfile.TemporaryDirectory(prefix="zoo-eval-") as tmp:
                result = run_eval(state.host(), registry, request, Path(tmp), progress, note)
        except (BackendUnavailable, ValueError, KeyError) as exc:
            _fail(str(exc).strip("'\""), EXIT_FAILED)
    registry.add_eval(entry.id, result.record())
    if as_json:
        print(json.dumps(result.as_dict(), indent=1, default=str))
        return
    table = Table(
        title=f"zoo eval {entry.id} ({request.backend}; {len(result.prompts)} prompts; recogniser "
        f"{request.recogniser.path.name})",
        title_justify="left",
    )
    table.add_column("prompt", overflow="ellipsis", no_wrap=True, max_width=44)
    table.add_column("lang")
    systems = ["reference", "export"] + (["uncompressed"] if result.sibling else [])
    for name in systems:
        table.add_column({"reference": "ref", "uncompressed": "uncomp"}.get(name, name), justify="right")
    table.add_column("Δ", justify="right")
    for row in result.prompts:
        rate = row.rate
        table.add_row(
            row.prompt.text,
            row.prompt.lang,
            *(f"{rate[s]:.2f}" for s in systems),
            f"{rate['export'] - rate['reference']:+.2f}",
        )
    out.print(table)
    if random_weights:
        out.print("random weights: no quality claim (the audio is not speech)")
        return
    summary = result.summary()
    for metric in ("wer", "cer"):
        if summary["export"][metric] is None:
            continue
        export, reference = summary["export"][metric], summary["reference"][metric]
        line = f"{metric.upper()}: export {export:.3f}, reference {reference:.3f} (Δ {export - reference:+.3f})"
        if result.sibling:
            uncompressed = summary["uncompressed"][metric]
            line += f", uncompressed {uncompressed:.3f} (Δ {export - uncompressed:+.3f})"
        out.print(line)
    out.print(
        f"QoI: {summary['qoi']:.2f} of prompts no worse than the reference"
        + (f", {summary['qoi_vs_uncompressed']:.2f} than the uncompressed export" if result.sibling else "")
    )
