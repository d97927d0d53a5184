"""``zoo eval``: does an export still say the words?

Each prompt is spoken through the export's packages and, with the same voice, seed and
settings, through the torch reference (the plugin's traceables on the export's own weights) and,
for a compressed export, through its uncompressed sibling's packages when one is registered. A
local speech recogniser (faster-whisper on a CTranslate2 Whisper model directory, ``--asr PATH``)
transcribes every rendition; each is scored against the prompt's text by word error rate (WER;
character error rate, CER, for Japanese and Mandarin) after one normalisation (:func:`normalise`).
QoI is the share of prompts where the export does no worse than the reference (whisperkittools'
"quality of inference"). The spectral distance export↔reference (``validation.spectral_distance``)
is reported per prompt beside them.

An export made with random weights is run through the same pipeline, but its audio is not speech:
the result says so and records no quality claim (no WER, CER or QoI in the registry).
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..plugin.errors import UsageError
from ..registry.entry import ExportEntry
from ..registry.store import Registry
from ..run.recogniser import ASR_RATE, EXTRA, EvalUnavailable, Recogniser, check_asr  # noqa: F401  (the recogniser zoo eval scores with)

PROMPTS_DIR = Path(__file__).parent / "prompts"
#: languages scored by characters: their text has no spaces between words
BY_CHARACTER = frozenset({"ja", "zh"})
#: the rate Whisper listens at
#: the longest prompt file zoo eval reads
MAX_PROMPT_BYTES = 1 << 20
#: ``zoo export --asr``: a compressed variant must say at least this share of the built-in prompts
#: no worse than its uncompressed packages (QoI). Measured: espeak-ng speech of the 21 English
#: prompts at 140 words a minute against the same at ±10% tempo (154 / 127 wpm), Whisper tiny.en:
#: QoI 0.857 both ways (3 prompts heard worse, while slower speech scored a lower mean WER, 0.186
#: against 0.223), and 1.0 for a negligible change (141 wpm). So a rendition that costs nothing
#: audible scores ~0.86 through this recogniser's own noise; 0.75 allows one prompt in four.
QOI_MIN = 0.75


@dataclass(frozen=True)
class Prompt:
    lang: str
    text: str


def builtin_prompts(languages: Iterable[str]) -> list[Prompt]:
    """zoo's prompts for each language (``core/evaluation/prompts/<lang>.txt``; a language without a file has none)."""
    prompts = []
    for lang in languages:
        path = PROMPTS_DIR / f"{lang}.txt"
        if path.is_file():
            prompts += [
                Prompt(lang, line.strip())
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")
            ]
    return prompts


def read_prompts(path: str | Path, default_lang: str, known: Iterable[str]) -> list[Prompt]:
    """A user's prompt file: one prompt a line, optionally ``lang<TAB>text``; blank lines and lines
    starting with ``#`` are skipped. UsageError names the line of anything wrong."""
    path = Path(path)
    known = set(known)
    if not path.is_file():
        raise UsageError(f"--prompts {path}: no such file")
    raw = path.read_bytes()
    if len(raw) > MAX_PROMPT_BYTES:
        raise UsageError(f"--prompts {path}: larger than {MAX_PROMPT_BYTES >> 20} MiB")
    prompts = []
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"--prompts {path}, line {number}: not UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
            ) from None
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        lang, _, said = text.partition("\t") if "\t" in text else (default_lang, "", text)
        lang, said = lang.strip(), said.strip()
        if lang not in known:
            raise UsageError(
                f"--prompts {path}, line {number}: language {lang!r} is not one this model speaks "
                f"({', '.join(sorted(known))})"
            )
        if not said:
            raise UsageError(f"--prompts {path}, line {number}: no text after the language")
        prompts.append(Prompt(lang, said))
    if not prompts:
        raise UsageError(f"--prompts {path}: no prompts in it")
    return prompts


def prompts_digest(prompts: Iterable[Prompt]) -> str:
    return hashlib.sha256("".join(f"{p.lang}\t{p.text}\n" for p in prompts).encode()).hexdigest()


# ------------------------------------------------------------------------------------ normalisation
_NUM2WORDS = {"en": "en", "es": "es", "fr": "fr", "it": "it", "pt": "pt_BR"}


def _words_for(number: str, lang: str, kind: str = "cardinal") -> str:
    try:
        from num2words import num2words
    except ModuleNotFoundError:  # pragma: no cover - the eval extra installs it
        return number
    code = _NUM2WORDS.get(lang)
    if code is None:
        return number
    try:
        value: float | int = float(number) if "." in number else int(number)
        return str(num2words(value, lang=code, to=kind))
    except (NotImplementedError, ValueError, OverflowError):
        return number


def normalise(text: str, lang: str = "en") -> str:
    """The text as it is scored: Unicode NFKC, lower case; English symbols said as words (% ->
    percent, & -> and, $N -> N dollars); times (9:30), ordinals (3rd), decimals (3.2) and numbers
    (1,200) written out as words (num2words, for the languages it knows); punctuation and symbols
    dropped, hyphens and apostrophes too ("round-trip" = "round trip", "can't" = "cant"); white
    space collapsed. Japanese and Mandarin: the same, then every space removed (scored by character)."""
    text = unicodedata.normalize("NFKC", text).lower()
    if lang == "en":
        text = re.sub(r"\$\s?(\d[\d,]*(?:\.\d+)?)", r"\1 dollars", text)
        text = text.replace("%", " percent").replace("&", " and ")
    text = re.sub(
        r"\b(\d{1,2}):(\d{2})\b",
        lambda m: (
            f"{_words_for(m.group(1), lang)} "
            f"{_words_for(m.group(2).lstrip('0') or '0', lang) if m.group(2) != '00' else ''}"
        ),
        text,
    )
    text = re.sub(
        r"\b(\d+)(st|nd|rd|th)\b",
        lambda m: _words_for(m.group(1), lang, "ordinal") if lang == "en" else m.group(0),
        text,
    )
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,200 -> 1200
    text = re.sub(r"\d+\.\d+|\d+", lambda m: " " + _words_for(m.group(0), lang) + " ", text)
    text = re.sub(r"(?<=\w)['’](?=\w)", "", text)  # can't -> cant
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    text = " ".join(text.split())
    return text.replace(" ", "") if lang in BY_CHARACTER else text


def error_rate(said: str, heard: str, lang: str) -> float:
    """WER (CER for Japanese and Mandarin) of ``heard`` against ``said``, both normalised (jiwer)."""
    import jiwer

    reference, hypothesis = normalise(said, lang), normalise(heard, lang)
    if not reference:
        return 0.0 if not hypothesis else 1.0
    if lang in BY_CHARACTER:
        return float(jiwer.cer(reference, hypothesis))
    return float(jiwer.wer(reference, hypothesis))


# ------------------------------------------------------------------------------------ results
@dataclass
class PromptResult:
    prompt: Prompt
    heard: dict[str, str] = field(default_factory=dict)  # system -> transcript
    rate: dict[str, float] = field(default_factory=dict)  # system -> WER or CER
    seconds: dict[str, float] = field(default_factory=dict)  # system -> seconds of audio
    wall: dict[str, float] = field(default_factory=dict)  # system -> seconds spent speaking it
    asr_wall: float = 0.0  # seconds spent transcribing every rendition
    spectral: float | None = None  # export vs reference

    def as_dict(self) -> dict[str, Any]:
        return {
            "lang": self.prompt.lang,
            "text": self.prompt.text,
            "metric": "cer" if self.prompt.lang in BY_CHARACTER else "wer",
            "heard": self.heard,
            "error_rate": self.rate,
            "audio_seconds": self.seconds,
            "speak_seconds": self.wall,
            "asr_seconds": round(self.asr_wall, 3),
            "spectral_distance": self.spectral,
        }


@dataclass
class EvalResult:
    export_id: str
    backend: str
    voice: str | None
    asr: Path
    asr_sha256: str
    prompts_digest: str
    random_weights: bool
    sibling: str | None = None  # the uncompressed export compared too
    prompts: list[PromptResult] = field(default_factory=list)
    seconds: float = 0.0

    def mean(self, system: str, by_character: bool) -> float | None:
        rates = [
            p.rate[system] for p in self.prompts if system in p.rate and (p.prompt.lang in BY_CHARACTER) == by_character
        ]
        return sum(rates) / len(rates) if rates else None

    def qoi(self, against: str = "reference") -> float | None:
        """Share of prompts where the export's error rate is no worse than ``against``'s."""
        pairs = [(p.rate["export"], p.rate[against]) for p in self.prompts if "export" in p.rate and against in p.rate]
        return sum(1 for e, r in pairs if e <= r + 1e-12) / len(pairs) if pairs else None

    def summary(self) -> dict[str, Any]:
        systems = ["export", "reference"] + (["uncompressed"] if self.sibling else [])
        out: dict[str, Any] = {}
        for system in systems:
            out[system] = {"wer": self.mean(system, False), "cer": self.mean(system, True)}
        out["qoi"] = self.qoi("reference")
        if self.sibling:
            out["qoi_vs_uncompressed"] = self.qoi("uncompressed")
        return out

    def record(self) -> dict[str, Any]:
        """The registry's ``[[exports.eval]]`` row (no quality claim for random weights)."""
        row: dict[str, Any] = {
            "asr": str(self.asr),
            "asr_sha256": self.asr_sha256,
            "prompts_sha256": self.prompts_digest,
            "prompts": len(self.prompts),
            "backend": self.backend,
            "voice": self.voice or "",
            "seconds": round(self.seconds, 1),
            "languages": sorted({p.prompt.lang for p in self.prompts}),
        }
        if self.sibling:
            row["uncompressed_export"] = self.sibling
        if self.random_weights:
            row["quality_claim"] = False
            row["note"] = "random weights: the audio is not speech, so no WER, CER or QoI is recorded"
            return row
        row["quality_claim"] = True
        summary = self.summary()
        for system in ("export", "reference", "uncompressed"):
            for metric in ("wer", "cer"):
                value = summary.get(system, {}).get(metric)
                if value is not None:
                    row[f"{system}_{metric}"] = round(value, 4)
        for key in ("qoi", "qoi_vs_uncompressed"):
            if summary.get(key) is not None:
                row[key] = round(summary[key], 4)
        # each prompt's error rate (WER, CER for Japanese and Mandarin): the published card draws them
        row["per_prompt"] = [
            {
                "id": f"{i + 1}:{p.prompt.lang}",
                "metric": "cer" if p.prompt.lang in BY_CHARACTER else "wer",
                **{f"{system}_rate": round(rate, 4) for system, rate in sorted(p.rate.items())},
            }
            for i, p in enumerate(self.prompts)
        ]
        return row

    def as_dict(self) -> dict[str, Any]:
        return {
            "export": self.export_id,
            "backend": self.backend,
            "voice": self.voice,
            "asr": str(self.asr),
            "random_weights": self.random_weights,
            "uncompressed_export": self.sibling,
            "summary": None if self.random_weights else self.summary(),
            "record": self.record(),
            "prompts": [p.as_dict() for p in self.prompts],
            "seconds": self.seconds,
        }


Speaker = Callable[[Prompt], tuple[Any, int]]


def speaker(host: Any, model: Any, runtime: Any, voice: str | None = None, seed: int = 0) -> Speaker:
    """A ``Speaker``: each prompt through ``model``'s run loop on ``runtime`` from fresh states, in
    the run settings of the prompt's language (``ModelSpec.languages``), with ``voice`` and ``seed``."""
    from ..plugin.run import RunOptions

    def speak(prompt: Prompt) -> tuple[Any, int]:
        runtime.reset_states()
        options = RunOptions(voice=voice, seed=seed, settings=dict(model.languages.get(prompt.lang, {})))
        result = host.call(model, "run_loop", runtime=runtime, text=prompt.text, options=options)
        return result.audio, result.sample_rate

    return speak


def evaluate(
    prompts: list[Prompt],
    speakers: Mapping[str, Speaker],
    recogniser: Recogniser,
    result: EvalResult,
    progress: Callable[[int, int, PromptResult], None] | None = None,
) -> EvalResult:
    """Speak every prompt with every system (``export``, ``reference``, maybe ``uncompressed``),
    transcribe and score each; ``progress(done, total, row)`` after each prompt."""
    from ..validation.metrics import spectral_distance

    start = time.perf_counter()
    for index, prompt in enumerate(prompts):
        row = PromptResult(prompt)
        audio: dict[str, Any] = {}
        for system, speak in speakers.items():
            began = time.perf_counter()
            samples, rate = speak(prompt)
            row.wall[system] = round(time.perf_counter() - began, 3)
            audio[system] = samples
            row.seconds[system] = round(len(samples) / rate, 3)
            began = time.perf_counter()
            heard, _ = recogniser.transcribe(samples, rate, prompt.lang)
            row.asr_wall += time.perf_counter() - began
            row.heard[system] = heard
            row.rate[system] = error_rate(prompt.text, heard, prompt.lang)
        if "export" in audio and "reference" in audio:
            import numpy as np

            a, b = np.asarray(audio["export"]).reshape(-1), np.asarray(audio["reference"]).reshape(-1)
            n = max(a.size, b.size)  # audio one has and the other lacks counts as difference
            row.spectral = round(spectral_distance(np.pad(a, (0, n - a.size)), np.pad(b, (0, n - b.size))), 4)
        result.prompts.append(row)
        if progress is not None:
            progress(index + 1, len(prompts), row)
    result.seconds = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------ planning a run
@dataclass
class EvalPlan:
    """A checked ``zoo eval``: everything known usable before any TTS model loads."""

    entry: ExportEntry
    model: Any  # ModelSpec
    prompts: list[Prompt]
    recogniser: Recogniser
    backend: str
    voice: str | None
    seed: int
    sibling: ExportEntry | None


def plan(
    host: Any,
    registry: Registry,
    key: str,
    asr: str | Path | None,
    prompts_file: str | Path | None = None,
    lang: str | None = None,
    backend: str = "mil",
    voice: str | None = None,
    seed: int = 0,
) -> EvalPlan:
    """Resolve and check a ``zoo eval`` (UsageError for a bad value, BackendUnavailable for an
    export that is missing or cannot be run); the recogniser is loaded here (half a second), the
    TTS models only when the prompts are spoken."""
    from ..host.plugins import UnknownModelError
    from ..run.speak import _check_voice, export_voices
    from ..runtime.backends import BACKENDS, BackendUnavailable

    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    entry = next((e for e in registry.exports() if e.id == key), None)
    try:
        model = host.model(entry.model if entry is not None else key)
    except UnknownModelError:
        raise UsageError(f"no export or model {key!r} (see `zoo list`)") from None
    if model.output != "audio":
        raise UsageError(
            f"zoo eval scores speech by what a recogniser hears; {model.name} outputs {model.output}, not audio "
            "(its exports are judged by their validation: `zoo info`)"
        )
    if entry is None:
        entry = registry.latest_valid(model.name)
        if entry is None:
            raise BackendUnavailable(
                f"no valid export of {model.name!r} in {registry.path}; run `zoo export {model.name}` first"
            )
    if entry.status != "valid":
        raise BackendUnavailable(f"export {entry.id} is not valid ({entry.status}); evaluate a valid one")
    spoken = dict(model.languages)
    if lang is not None and lang not in spoken:
        raise UsageError(f"--lang {lang!r}: {model.name} speaks {', '.join(spoken)}")
    chosen = [lang] if lang else list(spoken)
    prompts = read_prompts(prompts_file, chosen[0], chosen) if prompts_file is not None else builtin_prompts(chosen)
    if not prompts:
        raise UsageError(f"zoo has no prompts for {', '.join(chosen)}; give your own with --prompts FILE")
    recogniser = Recogniser(check_asr(asr))
    if not recogniser.multilingual and any(p.lang != "en" for p in prompts):
        others = sorted({p.lang for p in prompts if p.lang != "en"})
        raise EvalUnavailable(
            f"--asr {recogniser.path} is an English-only Whisper model and the prompts include {', '.join(others)}: "
            "use --lang en, or a multilingual model"
        )
    from ..registry.verify import intact
    from ..util.cachedir import default_cache_root

    problems = intact(registry, entry, default_cache_root() / "verified")
    if problems:
        raise BackendUnavailable(
            f"export {entry.id} cannot be evaluated: {problems[0].message}; run `zoo verify {entry.id}`"
        )
    _check_voice(model, voice, export_voices(host, model, registry, entry))
    sibling = None
    variant = model.variants.get(entry.variant_name)
    if variant is not None and variant.compression != "none":
        sibling = registry.latest_valid(
            model.name,
            entry.checkpoint(model.default_checkpoint) or None,
            model.default_checkpoint,
            variant.uncompressed().name,
        )
        problems = intact(registry, sibling, default_cache_root() / "verified") if sibling is not None else []
        if sibling is not None and problems:
            raise BackendUnavailable(
                f"the uncompressed export {sibling.id} to compare with cannot be run: {problems[0].message}; "
                f"run `zoo verify {sibling.id}`"
            )
    return EvalPlan(entry, model, prompts, recogniser, backend, voice, seed, sibling)


def weights_of(entry: ExportEntry) -> Any:
    """The WeightsSource an export was made from (its registry record)."""
    from ..plugin.spec import WeightsSource

    weights = entry.weights
    if weights.get("kind") == "random":
        return WeightsSource.random(int(weights.get("seed", 0)))
    if weights.get("kind") == "local":
        return WeightsSource.local(weights["path"])
    return WeightsSource.hub(weights.get("repo", ""), weights.get("revision", ""))


def run_eval(
    host: Any,
    registry: Registry,
    request: EvalPlan,
    workdir: Path,
    progress: Callable[[int, int, PromptResult], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> EvalResult:
    """Speak, transcribe and score every prompt (``evaluate``) with the export, the torch reference
    on the export's weights, and the uncompressed sibling if one is registered."""
    from ..host.session import ModelSession
    from ..plugin.run import RunOptions
    from ..run.speak import RunRequest, build_runtime

    model, entry = request.model, request.entry
    tell = note or (lambda text: None)

    def packages(of: ExportEntry) -> Any:
        req = RunRequest(
            model.name,
            request.backend if request.backend != "torch" else "mil",
            "",
            workdir / "x.wav",
            RunOptions(),
            entry=of,
        )
        return build_runtime(host, req, registry, workdir)[0]

    tell(f"loading {entry.id}")
    systems: dict[str, Any] = {"export": packages(entry)}
    tell("loading the torch reference")
    checkpoint = entry.checkpoint() or None
    session = ModelSession(
        host,
        model.name,
        model.variants[entry.variant_name].uncompressed(),
        weights_of(entry),
        checkpoint=checkpoint,
    )
    (workdir / "reference").mkdir(parents=True, exist_ok=True)
    systems["reference"] = session.torch_runtime(workdir / "reference")
    if request.backend == "torch":
        systems["export"] = systems["reference"]
    if request.sibling is not None:
        tell(f"loading the uncompressed {request.sibling.id}")
        systems["uncompressed"] = packages(request.sibling)

    result = EvalResult(
        entry.id,
        request.backend,
        request.voice,
        request.recogniser.path,
        request.recogniser.sha256,
        prompts_digest(request.prompts),
        entry.random_weights,
        request.sibling.id if request.sibling else None,
    )
    return evaluate(
        request.prompts,
        {name: speaker(host, model, rt, request.voice, request.seed) for name, rt in systems.items()},
        request.recogniser,
        result,
        progress,
    )
