"""`zoo run`: drive a plugin's run_loop over one backend and write a WAV."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..host.plugins import PluginHost
from ..kit.audio import WavStream, read_wav, write_wav
from ..plugin.errors import UsageError
from ..plugin.run import RunOptions, RunResult, parse_run_settings
from ..plugin.spec import WeightsSource
from ..registry.entry import ExportEntry
from ..registry.owned import zoo_state
from ..registry.store import Registry
from ..runtime.backends import BACKENDS, BackendUnavailable, ComponentRuntime, CoreMLRuntime, MilRuntime


@dataclass
class RunSummary:
    result: RunResult
    #: None when the result came from the run-result cache (nothing was run)
    runtime: ComponentRuntime | None
    wall_seconds: float
    source: str
    #: spoken by seeded random weights: the audio is not speech
    random_weights: bool = False
    #: when the first piece of audio was written, and how many component calls it took (None:
    #: the run loop hands its audio over only at the end)
    first_audio_seconds: float | None = None
    calls_before_first_audio: int | None = None
    #: the timings the loop reported (``zoo run --timestamps``)
    timings: list[Any] | None = None
    #: what the model outputs (``ModelSpec.output``) and the backend asked for
    output_kind: str = "audio"
    backend: str = ""
    #: the result was the run-result cache's (``core/run/cache.py``): no component was called
    cached: bool = False

    def as_dict(self, output: Path, model: str) -> dict[str, Any]:
        calls = dict(sorted(self.runtime.calls.items())) if self.runtime is not None else {}
        total = sum(calls.values())
        head = {
            "model": model,
            "output_kind": self.output_kind,
            "backend": self.runtime.backend if self.runtime is not None else self.backend,
            **({"engine": engine} if (engine := getattr(self.runtime, "engine", None)) else {}),
            "source": self.source,
        }
        if self.output_kind != "audio":
            values = self.result.values
            return {
                **head,
                "random_weights": self.random_weights,
                "cached": self.cached,
                "output": str(output),
                "shape": list(values.shape) if values is not None else None,
                "dtype": str(values.dtype) if values is not None else None,
                "frames": self.result.frames,
                "wall_seconds": self.wall_seconds,
                "calls": calls,
                "calls_total": total,
                **({"info": self.result.info} if self.result.info else {}),
            }
        audio_seconds = len(self.result.audio) / self.result.sample_rate
        return {
            **head,
            "random_weights": self.random_weights,
            "first_audio_seconds": self.first_audio_seconds,
            "calls_before_first_audio": self.calls_before_first_audio,
            "output": str(output),
            "sample_rate": self.result.sample_rate,
            "frames": self.result.frames,
            "audio_seconds": audio_seconds,
            "wall_seconds": self.wall_seconds,
            "realtime_factor": audio_seconds / self.wall_seconds if self.wall_seconds > 0 else None,
            "calls": calls,
            "calls_total": total,
            "calls_per_audio_second": total / audio_seconds if audio_seconds > 0 else None,
            **({"info": self.result.info} if self.result.info else {}),
            **({"timings": [dataclasses.asdict(t) for t in self.timings]} if self.timings is not None else {}),
        }


@dataclass(frozen=True)
class RunRequest:
    """A checked ``zoo run``: everything is known to be usable before any model loads."""

    model: str
    backend: str
    text: str
    output: Path
    options: RunOptions
    weights: WeightsSource | None = None
    variant: str | None = None
    #: the registered export to run (mil / coreml backends)
    entry: ExportEntry | None = None
    #: the checkpoint (models that have them; None: the default, or the export's)
    checkpoint: str | None = None
    #: where to write the run's timings (``zoo run --timestamps``: .json, .srt or .vtt)
    timestamps: Path | None = None
    #: a recogniser's model directory: pieces' timings become the words it hears (``--asr``)
    asr: Path | None = None
    #: models whose output is not audio: run even when the run-result cache holds the result
    no_cache: bool = False

    @property
    def random_weights(self) -> bool:
        """What runs was made from seeded random weights (the registered export's, or --random-weights)."""
        if self.entry is not None:
            return self.entry.random_weights
        return self.weights is not None and self.weights.kind == "random"


def _word_hearer(asr: Path, model: Any, options: RunOptions) -> Callable[[list[Any], list[Any]], list[Any]]:
    """For ``--asr``: a function turning a piece's timing into the words a recogniser hears in that
    piece's audio (kind "recognised": heard, not predicted), clipped to the piece and in order.
    Word timings a loop predicts itself (kind "word") pass through unchanged."""
    import numpy as np

    from ..plugin.timestamps import Timing
    from .recogniser import Recogniser

    recogniser = Recogniser(asr)
    lang = next(
        (
            code
            for code, settings in model.languages.items()
            if settings and all(options.settings.get(k) == v for k, v in settings.items())
        ),
        next(iter(model.languages), "en"),
    )

    dropped = [0]  # samples of ``spoken`` already let go (before the last piece heard)

    def hear(piece: list[Any], spoken: list[Any]) -> list[Any]:
        heard: list[Any] = []
        audio = (
            np.concatenate([np.asarray(a, np.float32).reshape(-1) for a in spoken])
            if spoken
            else np.zeros(0, np.float32)
        )
        rate = model.sample_rate
        for timing in piece:
            if timing.kind != "piece":
                heard.append(timing)
                continue
            segment = audio[
                max(0, int(round(timing.start * rate)) - dropped[0]) : max(
                    0, int(round(timing.end * rate)) - dropped[0]
                )
            ]
            _, words = recogniser.transcribe(segment, rate, lang, words=True)
            floor = timing.start
            for word, begin, end in words:
                begin, end = max(floor, timing.start + begin), min(timing.end, timing.start + end)
                if word and end > begin:
                    heard.append(Timing(word, round(begin, 6), round(end, 6), "recognised"))
                    floor = end
        # pieces come in order: the audio before this one's end is never heard again
        keep = audio[max(0, int(round(piece[-1].end * rate)) - dropped[0]) :] if piece else audio
        dropped[0] += audio.size - keep.size
        spoken[:] = [keep] if keep.size else []
        return heard

    return hear


def plan(
    host: PluginHost,
    model_name: str,
    text: str,
    output: Path,
    backend: str = "torch",
    registry: Registry | None = None,
    weights: WeightsSource | None = None,
    variant: str | None = None,
    options: RunOptions | None = None,
    checkpoint: str | None = None,
    timestamps: Path | None = None,
    asr: Path | None = None,
    no_cache: bool = False,
) -> RunRequest:
    """Check a run without loading anything heavy: the text, the output path, the ``--set`` options
    (typed and range-checked by the model's RunSettings), the variant, the export to run and its
    voices. A bad value raises UsageError naming it; a missing export raises BackendUnavailable."""
    model = host.model(model_name)
    options = options or RunOptions()
    if model.input == "voice":
        if text.strip():
            raise UsageError(f"{model.name} takes no text: it reads the recording given with --voice FILE.wav")
        if not options.voice:
            raise UsageError(f"{model.name} needs a voice recording: give it with --voice FILE.wav")
    else:
        check_text(text)
    output = Path(output)
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if model.output != "audio":
        from .outputs import check_suffix

        check_suffix(model.output, model.name, output)
        if timestamps is not None:
            raise UsageError(f"--timestamps times spoken words; {model.name} outputs {model.output}, not audio")
    check_output(output, registry or Registry())
    if timestamps is not None:
        from ..plugin.timestamps import timestamp_format

        try:
            timestamp_format(Path(timestamps))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if Path(os.path.realpath(timestamps)) == Path(os.path.realpath(output)):
            raise UsageError(f"--timestamps {timestamps} is the WAV file -o names; give another file")
        check_output(Path(timestamps), registry or Registry(), "--timestamps")
    if asr is not None:
        if timestamps is None:
            raise UsageError("--asr gives word timings for --timestamps FILE; add --timestamps")
        from .recogniser import check_asr

        asr = check_asr(asr)
    parse_run_settings(model.run_settings, options.settings, model.name)
    if variant is not None and variant not in model.variants:
        raise UsageError(f"model {model.name!r} has no variant {variant!r}; variants: {', '.join(model.variants)}")
    if checkpoint is not None:
        from ..host.session import resolve_variant

        try:
            resolve_variant(model, variant, checkpoint)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    entry = None
    voices = None
    if backend != "torch":
        registry = registry or Registry()
        entry = _export_entry(registry, model, variant, checkpoint)
        from ..registry.verify import intact
        from ..util.cachedir import default_cache_root

        problems = intact(registry, entry, default_cache_root() / "verified")
        if problems:
            first = problems[0]
            what = "" if first.kind == "export" else f"{first.kind} {first.name!r}: "
            raise BackendUnavailable(
                f"export {entry.id} cannot be run: {what}{first.message}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                + f"; run `zoo verify {entry.id}`"
            )
        voices = export_voices(host, model, registry, entry)
    _check_voice(model, options.voice, voices)
    return RunRequest(
        model.name,
        backend,
        text,
        output,
        options,
        weights,
        variant,
        entry,
        checkpoint,
        Path(timestamps) if timestamps is not None else None,
        Path(asr) if asr is not None else None,
        no_cache,
    )


def export_voices(host: PluginHost, model: Any, registry: Registry, entry: ExportEntry) -> list[str] | None:
    """The voices a registered export offers (the plugin's list_voices on its constants, read
    without loading a model); None when the model names none or a constant file is missing."""
    constants = {c.name: registry.member(entry, c.path) for c in entry.constants}
    if not all(p.exists() for p in constants.values()):
        return None
    return host.call(model, "list_voices", constants=constants)


#: how much of a voice WAV ``zoo run`` reads to check it before loading a model
VOICE_CHECK_SECONDS = 60.0
#: the longest text ``--text-file`` takes (a book's chapter is ~100 KB)
MAX_TEXT_BYTES = 16 << 20


def _line_column(text: "str | bytes", index: int) -> tuple[int, int]:
    """1-based line and column of position ``index`` (of characters, or of bytes)."""
    newline = "\n" if isinstance(text, str) else b"\n"
    return text.count(newline, 0, index) + 1, index - (text.rfind(newline, 0, index) + 1) + 1  # type: ignore[arg-type]


def check_text(text: str, where: str = "TEXT") -> None:
    """Refuse empty text and text that is not Unicode (lone surrogates: the shell's way of passing
    bytes that are not UTF-8), naming the position."""
    if not text.strip():
        raise UsageError(f"{where} is empty: give the words to speak")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        what = (
            f"the byte 0x{code - 0xDC00:02x}, which is not UTF-8"
            if 0xDC80 <= code <= 0xDCFF
            else f"a lone surrogate U+{code:04X}"
        )
        line, column = _line_column(text, exc.start)
        raise UsageError(f"{where} is not valid text: line {line}, column {column} is {what}") from None


def read_text_file(path: str) -> str:
    """``--text-file PATH`` (``-``: standard input) as UTF-8, at most MAX_TEXT_BYTES; invalid UTF-8
    is refused naming its line and column (UsageError)."""
    where = "standard input" if path == "-" else f"--text-file {path}"
    if path == "-":
        raw = sys.stdin.buffer.read(MAX_TEXT_BYTES + 1)
    else:
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"{where}: " + ("is a directory" if file.is_dir() else "no such file"))
        try:
            with open(file, "rb") as f:
                raw = f.read(MAX_TEXT_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"{where}: cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_TEXT_BYTES:
        raise UsageError(f"{where}: longer than {MAX_TEXT_BYTES >> 20} MiB; split the text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_column(raw, exc.start)
        raise UsageError(
            f"{where}: not UTF-8 text at line {line}, column {column} (byte 0x{raw[exc.start]:02x})"
        ) from None
    check_text(text, where)
    return text.removeprefix("\ufeff")


def check_output(output: Path, registry: Registry, flag: str = "-o") -> None:
    """``-o`` must be a file zoo may write: not a directory or a device, not zoo's own state (the
    registry, its lock, anything inside a registered export or the stage cache), in a folder
    where a file can be created (tried, not guessed: permissions, read-only filesystems)."""
    if output.is_dir():
        raise UsageError(f"{flag} {output} is a directory; give the file to write")
    if output.exists() and not output.is_file():
        raise UsageError(f"{flag} {output} exists and is not a regular file")
    target = Path(os.path.realpath(output))
    what, folder = zoo_state(registry, target)
    if what and folder is None:
        raise UsageError(f"{flag} {output} is {what}; choose another file")
    if what:
        raise UsageError(f"{flag} {output} lies inside {what} ({folder}); zoo never writes its output there")
    folder = target.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {output}: {folder} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".zoo-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{flag} {output}: cannot create a file in {folder} ({exc.strerror})") from None


def _check_voice(model: Any, voice: str | None, voices: list[str] | None) -> None:
    if voice is None:
        return
    looks_like_file = model.input == "voice" or voice.lower().endswith(".wav") or "/" in voice
    if looks_like_file:
        if not (model.clones_voices or model.input == "voice"):
            raise UsageError(
                f"{model.name} cannot clone a voice from a WAV file; choose one of its voices"
                + (f": {', '.join(voices)}" if voices else "")
            )
        if not Path(voice).is_file():
            raise UsageError(f"--voice {voice}: no such WAV file")
        try:  # the whole header and up to a minute of samples: a bad file is said before any model loads
            read_wav(voice, max_seconds=VOICE_CHECK_SECONDS, what="--voice")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return
    if voices is not None and voice not in voices:
        import difflib

        close = difflib.get_close_matches(voice, voices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        clone = " (or a WAV file to clone)" if model.clones_voices else ""
        raise UsageError(f"unknown voice {voice!r}{hint}; this export has: {', '.join(voices) or '(none)'}{clone}")


def _export_entry(registry: Registry, model: Any, variant: str | None, checkpoint: str | None = None) -> ExportEntry:
    """The newest valid export of the model (of ``variant`` and ``checkpoint`` when given)."""
    model_name = model.name
    entry = registry.latest_valid(model_name, checkpoint, model.default_checkpoint, variant)
    if entry is None:
        which = ", ".join(
            x
            for x in (f"variant {variant!r}" if variant else "", f"checkpoint {checkpoint!r}" if checkpoint else "")
            if x
        )
        hint = (
            f"zoo export {model_name}"
            + (f" --variant {variant}" if variant else "")
            + (f" --checkpoint {checkpoint}" if checkpoint else "")
        )
        raise BackendUnavailable(
            f"no valid export of {model_name!r}{f' ({which})' if which else ''} in {registry.path}; run `{hint}` first"
        )
    return entry


def build_runtime(
    host: PluginHost, request: RunRequest, registry: Registry, workdir: Path
) -> tuple[ComponentRuntime, str]:
    if request.backend == "torch":
        from ..host.session import ModelSession

        session = ModelSession(host, request.model, request.variant, request.weights, checkpoint=request.checkpoint)
        of = f", checkpoint {session.variant.checkpoint}" if session.variant.checkpoint else ""
        return session.torch_runtime(
            workdir
        ), f"traceables ({session.weights.describe()}, variant {session.variant.name}{of})"
    entry = request.entry
    assert entry is not None
    packages = {c.name: registry.member(entry, c.path) for c in entry.components}
    constants = {c.name: registry.member(entry, c.path) for c in entry.constants}
    from ..registry.verify import missing_files

    missing = [str(p) for p in list(packages.values()) + list(constants.values()) if not p.exists()]
    missing += [f for c in entry.components if packages[c.name].exists() for f in missing_files(registry, entry, c)]
    if missing:
        raise BackendUnavailable(
            f"export {entry.id} is incomplete on disk (missing {', '.join(missing)}); run `zoo verify {entry.id}`"
        )
    runtime_cls = MilRuntime if request.backend == "mil" else CoreMLRuntime
    return runtime_cls(packages, constants), f"export {entry.id}"


def run(
    host: PluginHost, model_name: str, text: str, output: Path, registry: Registry | None = None, **request: Any
) -> RunSummary:
    """``plan`` then ``execute``: the library's one-call ``zoo run`` (``request``: backend,
    weights, variant, options as ``plan`` takes them)."""
    registry = registry or Registry()
    return execute(host, plan(host, model_name, text, output, registry=registry, **request), registry)


def _provenance(request: RunRequest, model: Any, source: str, digest: str | None, result: RunResult) -> dict[str, Any]:
    """What a ``.json`` output says of where its values came from."""
    entry = request.entry
    return {
        "model": model.name,
        "output_kind": model.output,
        "source": source,
        **({"export": entry.id, "variant": entry.variant_name} if entry is not None else {}),
        "backend": request.backend,
        **({"input": str(request.options.voice), "input_sha256": digest} if request.options.voice else {}),
        "frames": result.frames,
        "sample_rate": result.sample_rate,
        **({"info": result.info} if result.info else {}),
    }


def _execute_values(
    host: PluginHost,
    model: Any,
    request: RunRequest,
    registry: Registry,
    input_progress: Callable[[float, float], None] | None,
) -> RunSummary:
    """A model whose output is not audio: the run-result cache first (registered exports, not
    ``--no-cache``), else the loop; the values written to ``-o`` as .npy or .json."""
    from ..kit.audio import wav_digest
    from .cache import ResultCache
    from .outputs import write_values

    voice = request.options.voice
    digest = wav_digest(voice, "--voice") if voice and model.input == "voice" else None
    cache, key = ResultCache(), None
    random_weights = request.random_weights
    if request.entry is not None and digest is not None:
        key = ResultCache.key(
            request.entry, request.backend, digest, request.options.seed, request.options.settings, model.name
        )
        hit, _ = (None, "") if request.no_cache else cache.get(key)
        if hit is not None:
            result = RunResult.of_values(hit.values, hit.frames, hit.sample_rate, hit.info)
            source = f"export {request.entry.id} (cached result)"
            write_values(request.output, result.values, _provenance(request, model, source, digest, result))
            return RunSummary(
                result,
                None,
                0.0,
                source,
                random_weights,
                output_kind=model.output,
                backend=request.backend,
                cached=True,
            )
    with tempfile.TemporaryDirectory(prefix="zoo-run-") as tmp:
        runtime, source = build_runtime(host, request, registry, Path(tmp))
        options = dataclasses.replace(request.options, on_progress=input_progress)
        start = time.perf_counter()
        result = host.call(model, "run_loop", runtime=runtime, text=request.text, options=options)
        wall = time.perf_counter() - start
    if not isinstance(result, RunResult) or result.values is None:
        raise TypeError(
            f"run_loop of {model.name} (output {model.output}) must return zoo.core.RunResult with values, "
            f"got {type(result).__name__}"
        )
    write_values(request.output, result.values, _provenance(request, model, source, digest, result))
    if key is not None:
        cache.put(key, result.values, result.frames, result.sample_rate, result.info)
    return RunSummary(result, runtime, wall, source, random_weights, output_kind=model.output, backend=request.backend)


def execute(
    host: PluginHost,
    request: RunRequest,
    registry: Registry,
    progress: Callable[[float], None] | None = None,
    input_progress: Callable[[float, float], None] | None = None,
) -> RunSummary:
    """Run the loop, writing each piece of audio to the WAV as the loop hands it over
    (``RunOptions.emit``); ``progress(seconds_of_audio_so_far)`` is told after each piece. A model
    whose output is not audio writes its values at the end (``outputs.write_values``), from the
    run-result cache when it holds them; ``input_progress(done, total)`` follows its input."""
    model = host.model(request.model)
    if model.output != "audio":
        return _execute_values(host, model, request, registry, input_progress)
    stream: WavStream | None = None
    first: dict[str, Any] = {}
    timings: list[Any] | None = None
    writer = None
    if request.timestamps is not None:
        from ..plugin.timestamps import TimingWriter

        timings, writer = [], TimingWriter(request.timestamps, audio=str(request.output))

    spoken: list[Any] = []  # the audio so far, for the recogniser (--asr)
    hear = _word_hearer(request.asr, model, request.options) if request.asr is not None else None

    def on_timings(piece: list[Any]) -> None:
        assert timings is not None and writer is not None
        if hear is not None:
            piece = hear(piece, spoken)
        piece = [t for t in piece if not timings or t.start >= timings[-1].end - 1e-9]
        timings.extend(piece)
        writer.write(piece)  # each piece's timings as its audio is written

    with tempfile.TemporaryDirectory(prefix="zoo-run-") as tmp:
        runtime, source = build_runtime(host, request, registry, Path(tmp))

        def on_audio(audio: Any) -> None:
            nonlocal stream
            if stream is None:
                stream = WavStream(request.output, model.sample_rate)
                first.update(seconds=time.perf_counter() - start, calls=sum(runtime.calls.values()))
            stream.write(audio)
            if hear is not None:
                spoken.append(audio)
            if progress is not None:
                progress(stream.samples / model.sample_rate)

        options = dataclasses.replace(
            request.options, on_audio=on_audio, on_timings=on_timings if writer is not None else None
        )
        start = time.perf_counter()
        try:
            result = host.call(model, "run_loop", runtime=runtime, text=request.text, options=options)
        except BaseException:
            if stream is not None:
                stream.abort()
            if writer is not None:
                writer.abort()
            raise
        wall = time.perf_counter() - start
    if not isinstance(result, RunResult):
        if stream is not None:
            stream.abort()
        if writer is not None:
            writer.abort()
        raise TypeError(f"run_loop must return zoo.core.RunResult, got {type(result).__name__}")
    if stream is not None and stream.samples == len(result.audio) and result.sample_rate == model.sample_rate:
        stream.close()
    else:  # a loop that hands its audio over only at the end (or another way than it returns it)
        if stream is not None:
            stream.abort()
            first.clear()
        write_wav(request.output, result.audio, result.sample_rate)
    if writer is not None:
        writer.close()
    random_weights = request.random_weights
    return RunSummary(
        result,
        runtime,
        wall,
        source,
        random_weights,
        first.get("seconds"),
        first.get("calls"),
        timings,
        backend=request.backend,
    )
