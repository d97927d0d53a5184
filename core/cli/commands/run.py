"""`zoo run`: speak text through an export (MIL interpreter, CoreML or torch), or, for a model whose
input is a voice recording, write what it makes of it (an embedding)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..common import (
    EXIT_FAILED,
    EXIT_USAGE,
    _fail,
    _model,
    _registry_or_exit,
    _state,
    _weights,
    command,
    err,
    out,
)


@command()
def run(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="MODEL", help="model name (see `zoo list`)"),
    text: Optional[str] = typer.Argument(
        None, metavar="TEXT", help="text to speak (or --text-file); none for models that take a --voice recording"
    ),
    output: Path = typer.Option(
        ...,
        "-o",
        "--output",
        help="file to write: a WAV for models that speak; .npy or .json (the vector and its provenance) for models "
        "that output an embedding or tokens (written aside and renamed into place; never the registry, an export or "
        "the cache)",
    ),
    timestamps: Optional[Path] = typer.Option(
        None,
        "--timestamps",
        metavar="FILE",
        help="also write the words' (or, for models that predict no word durations, the text pieces') start and end "
        "times: .json, .srt or .vtt by the suffix, appended as each piece is spoken",
    ),
    asr: Optional[Path] = typer.Option(
        None,
        "--asr",
        metavar="DIR",
        help="with --timestamps, for models that predict no word durations: the words a local recogniser hears in "
        "each piece (faster-whisper model directory; zoo-tts\\[eval])",
    ),
    text_file: Optional[str] = typer.Option(
        None,
        "--text-file",
        metavar="PATH|-",
        help="read the text from a UTF-8 file, or standard input with -, instead of TEXT (for long texts)",
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto: the latest valid registered export, with CoreML on macOS and zoo's MIL interpreter elsewhere "
        "(torch when --weights/--random-weights is given); torch: the traceables (from --weights/--random-weights or "
        "the hub); mil: the registered export through zoo's MIL interpreter; coreml: the registered export through "
        "CoreML (macOS)",
    ),
    variant: Optional[str] = typer.Option(
        None, "--variant", help="variant \\[default: the model's default / the latest valid export]"
    ),
    checkpoint: Optional[str] = typer.Option(
        None,
        "--checkpoint",
        help="checkpoint (models that have several): the latest valid export of it, or its weights with --backend "
        "torch \\[default: the latest valid export / the model's default]",
    ),
    voice: Optional[str] = typer.Option(
        None,
        "--voice",
        help="voice name, or a WAV file where the model can clone voices; the recording itself for models that take "
        "one (any rate: resampled to the model's, said when it is)",
    ),
    no_cache: bool = typer.Option(
        False,
        "--no-cache",
        metavar="",
        help="models whose output is not audio: run the model even when the run-result cache holds the result for "
        "this export and recording",
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the sampling noise (and of --random-weights)"),
    settings: List[str] = typer.Option(
        [],
        "--set",
        help="plugin-specific run option KEY=VALUE (repeatable; `zoo info MODEL` lists each model's keys, types and "
        "ranges)",
    ),
    weights: Optional[Path] = typer.Option(None, "--weights", help="local weights for --backend torch"),
    random_weights: bool = typer.Option(
        False, "--random-weights", metavar="", help="seeded random weights for --backend torch"
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        metavar="",
        help="print one JSON object: frames, audio_seconds, wall_seconds, calls, calls_per_audio_second, "
        "first_audio_seconds, calls_before_first_audio",
    ),
) -> None:
    """Speak TEXT with MODEL through the plugin's run loop and write a 16-bit mono WAV.

    A model whose input is a recording (`zoo info MODEL`: input voice) takes no TEXT: `zoo run
    qwen3_speaker --voice ref.wav -o speaker.npy` writes its speaker embedding, and returns the stored
    one for the same recording and export without running the model (--no-cache runs it).

    With --backend mil or coreml the registered export is checked first: a changed, missing or
    added file in it stops the run, naming the file (`zoo verify ID` says more).
    """
    from ...plugin.errors import UsageError
    from ...plugin.run import RunOptions
    from ...run.speak import execute, plan, read_text_file
    from ...runtime.backends import BACKENDS, BackendUnavailable

    if backend == "auto":
        import platform

        backend = (
            "torch"
            if (weights is not None or random_weights)
            else ("coreml" if platform.system() == "Darwin" else "mil")
        )
    if backend not in BACKENDS:
        _fail(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}", EXIT_USAGE)
    spec = _model(ctx, model)
    if spec.input == "voice" and text_file is None:
        text = text or ""  # a model that takes a recording: plan() refuses any text, naming --voice
    elif (text is None) == (text_file is None):
        _fail(
            "give the text to speak either as TEXT or with --text-file PATH (- for standard input), not both"
            if text is not None
            else "give the text to speak: TEXT, or --text-file PATH (- for standard input)",
            EXIT_USAGE,
        )
    if text_file is not None:
        try:
            text = read_text_file(text_file)
        except UsageError as exc:
            _fail(str(exc), EXIT_USAGE)
    assert text is not None
    parsed = {}
    for item in settings:
        if "=" not in item or not item.split("=", 1)[0]:
            _fail(f"--set expects KEY=VALUE, got {item!r}", EXIT_USAGE)
        k, v = item.split("=", 1)
        parsed[k] = v
    source = _weights(weights, random_weights, seed)
    if source is not None and backend != "torch":
        _fail(
            "--weights/--random-weights only apply to --backend torch; other backends use the registered export",
            EXIT_USAGE,
        )
    registry = _registry_or_exit(ctx) if backend != "torch" else _state(ctx).registry()
    host = _state(ctx).host()
    try:  # everything checkable without loading a model: a bad value exits 2 before anything loads
        request = plan(
            host,
            spec.name,
            text,
            output,
            backend,
            registry,
            source,
            variant,
            RunOptions(voice=voice, seed=seed, settings=parsed),
            checkpoint,
            timestamps,
            asr,
            no_cache,
        )
    except UsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except BackendUnavailable as exc:
        _fail(str(exc), EXIT_FAILED)
    doing = "speaking with" if spec.output == "audio" else "running"
    try:
        with err.status(f"{doing} {spec.name} ({backend})…") as status:  # shown on a terminal only

            def progress(seconds: float) -> None:
                status.update(f"speaking with {spec.name} ({backend})… {seconds:.1f} s of audio written to {output}")

            def input_progress(done: float, total: float) -> None:
                status.update(f"running {spec.name} ({backend})… {done:.1f} of {total:.1f} s of {voice} read")

            summary = execute(
                host,
                request,
                registry,
                progress=None if as_json else progress,
                input_progress=None if as_json else input_progress,
            )
    except UsageError as exc:  # what the run loop refuses of its input (a silent recording)
        _fail(str(exc), EXIT_USAGE)
    except (BackendUnavailable, ValueError, KeyError) as exc:
        _fail(str(exc).strip("'\""), EXIT_FAILED)
    data = summary.as_dict(output, spec.name)
    for note in summary.result.info.get("notes", []) if not as_json else []:
        err.print(f"[yellow]! {note}[/]")
    if as_json:
        print(json.dumps(data, indent=1))
    elif spec.output != "audio":
        how = "from the run-result cache (--no-cache runs it)" if summary.cached else f"in {data['wall_seconds']:.2f} s"
        calls = ", ".join(f"{k}×{v}" for k, v in data["calls"].items()) or "none"
        out.print(
            f"[green]✓[/] wrote {output}: {spec.output} {tuple(data['shape'])} {data['dtype']} from {data['frames']} "
            f"frames {how} ({summary.source}); calls: {calls}"
        )
        if summary.random_weights:
            err.print(
                f"[yellow]! random weights: the real architecture with seeded random weights: the {spec.output} "
                "describes nothing[/]"
            )
    else:
        calls = ", ".join(f"{k}×{v}" for k, v in data["calls"].items())
        out.print(
            f"[green]✓[/] wrote {output}: {data['audio_seconds']:.2f} s of audio, {data['frames']} frames in "
            f"{data['wall_seconds']:.2f} s ({summary.source}); calls: {calls}"
        )
        if summary.timings is not None:
            kinds = sorted({t.kind for t in summary.timings})
            out.print(f"[green]✓[/] wrote {timestamps}: {len(summary.timings)} {'/'.join(kinds) or 'word'} timings")
        if summary.random_weights:
            err.print(
                "[yellow]! random weights: the model is the real architecture with seeded random weights, so the "
                "audio is noise-like, not speech[/]"
            )
    if summary.timings == [] and not as_json:
        err.print(
            f"[yellow]! {spec.name} reported no timings for this text (see `zoo info {spec.name}`); {timestamps} "
            "holds none[/]"
        )
