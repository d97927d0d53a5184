"""run_loop for Kokoro-82M: numpy orchestration over the components.

phonemes (G2P, or ``--set phonemes=``) -> token ids in the smallest bucket that
fits -> ``predictor`` -> durations rounded on the host (at least one frame per
token) -> features expanded along the frames (the alignment: upstream's one-hot
matmul, done as an exact gather) -> ``decoder`` with the harmonic source's noise
as input (seeded by ``--seed``) -> audio. Text longer than the largest bucket is
split at word boundaries, preferring punctuation, and the pieces concatenated.

The torch backend has no fixed shapes, so there the predictor runs on the
unpadded tokens exactly as KModel does; the packages run the padded bucket.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from ...core import RunOptions, RunResult, Runtime, Timing
from . import languages
from .options import RunConfig

MAX_PHONEMES = 510


def phonemize(text: str, g2p: Callable[[str], Any] | None = None) -> str:
    """Phonemes of ``text`` (default G2P: American English, see languages.py)."""
    return languages.phonemize(text, g2p or english_g2p())


def english_g2p() -> Callable[[str], Any]:
    return languages.g2p(languages.LANGUAGES["a"])[0]


def tokens(phonemes: str, vocab: dict[str, int]) -> list[int]:
    """Upstream's mapping: unknown symbols are dropped, 0 added at both ends."""
    ids = [vocab[p] for p in phonemes if p in vocab]
    if len(ids) + 2 > MAX_PHONEMES + 2:
        raise ValueError(f"{len(ids)} phonemes: more than the model's {MAX_PHONEMES}")
    return [0, *ids, 0]


def pick_bucket(length: int, buckets: list[int]) -> int:
    for bucket in sorted(buckets):
        if length <= bucket:
            return bucket
    raise ValueError(f"{length} tokens do not fit the largest bucket ({max(buckets)}); split the text")


def durations(raw: Any, count: int) -> Any:
    """upstream: round, at least 1 (numpy rounds half to even, as torch.round)."""
    return np.maximum(np.round(np.asarray(raw, dtype=np.float32)[0, :count]), 1).astype(np.int64)


def align(out: Mapping[str, Any], count: int) -> tuple[Any, Any, Any]:
    """The predictor's outputs expanded along the frames (upstream's one-hot alignment, as a gather):
    en [1, C, F], asr [1, 512, F], and the per-token frame counts."""
    frames = durations(out["duration"], count)
    order = np.repeat(np.arange(count), frames)
    en = np.ascontiguousarray(np.asarray(out["d"], np.float32)[0, order].T[None])
    asr = np.ascontiguousarray(np.asarray(out["t_en"], np.float32)[0][:, order][None])
    return en, asr, frames


def synthesize(
    runtime: Runtime,
    phonemes: str,
    vocab: dict[str, int],
    voice_pack: Any,
    buckets: list[int],
    speed: float = 1.0,
    noise: Callable[[tuple[int, ...]], Any] | None = None,
) -> tuple[Any, Any]:
    """One utterance: audio [samples] and the per-token frame counts."""
    predicted = predict(runtime, phonemes, vocab, voice_pack, buckets, speed)
    return decode(runtime, predicted, noise), predicted[2]


def predict(
    runtime: Runtime, phonemes: str, vocab: dict[str, int], voice_pack: Any, buckets: list[int], speed: float = 1.0
) -> tuple[Any, Any, Any, Any]:
    """The predictor on one piece: aligned features en, asr, the per-token frame counts, the style."""
    ids = tokens(phonemes, vocab)
    bucket = pick_bucket(len(ids), buckets)
    width = len(ids) if getattr(runtime, "backend", "") == "torch" else bucket  # see the module docstring
    padded = np.zeros((1, width), np.int32)
    padded[0, : len(ids)] = ids
    style = np.asarray(voice_pack[min(len(phonemes), len(voice_pack)) - 1], dtype=np.float32).reshape(1, -1)
    out = runtime(
        "predictor",
        {
            "input_ids": padded,
            "valid": np.array([len(ids)], np.int32),
            "style": style,
            "speed": np.array([speed], np.float32),
        },
        f"tokens{bucket}",
    )
    en, asr, frames = align(out, len(ids))
    return en, asr, frames, style


def decode(
    runtime: Runtime, predicted: tuple[Any, Any, Any, Any], noise: Callable[[tuple[int, ...]], Any] | None = None
) -> Any:
    """The decoder on a predicted piece: audio [samples]."""
    en, asr, _, style = predicted
    shape = (1, 600 * en.shape[2], 9)
    source_noise = noise(shape) if noise is not None else np.zeros(shape, np.float32)
    audio = runtime("decoder", {"en": en, "asr": asr, "style": style, "noise": source_noise})["audio"]
    return np.asarray(audio, np.float32).reshape(-1)


#: frames one decoder call may take (20 s of audio). The decoder's live values grow ~1.1 MB per
#: frame in zoo's MIL interpreter (measured: a 2,007-frame call peaked at 3.1 GB, 0.9 GB of it
#: the loaded packages), so a longer piece is split in two at the punctuation nearest its middle
#: and each half predicted again: a paragraph stays under 2 GB. The export's max_frames is the
#: hard limit (smaller for the small variants).
MAX_DECODER_FRAMES = 800


def halve(phonemes: str) -> tuple[str, str]:
    """Two pieces, cut after the sentence (else clause) punctuation nearest the middle word."""
    words = phonemes.split(" ")
    if len(words) < 2:
        raise ValueError(f"a single word needs more frames than one decoder call takes: {phonemes[:40]!r}")
    middle = len(words) / 2
    for marks in (languages.SENTENCE_ENDS, languages.CLAUSE_ENDS, None):
        cuts = [i + 1 for i, w in enumerate(words[:-1]) if marks is None or (w and w[-1] in marks)]
        if cuts:
            cut = min(cuts, key=lambda c: abs(c - middle))
            return " ".join(words[:cut]), " ".join(words[cut:])
    raise AssertionError("unreachable")


def split_phonemes(phonemes: str, vocab: dict[str, int], limit: int) -> list[str]:
    """Pieces of at most ``limit`` known phonemes, cut at spaces, after punctuation when possible."""
    words = phonemes.split(" ")
    pieces: list[str] = []
    current: list[str] = []

    def size(ws: list[str]) -> int:
        return sum(1 for ch in " ".join(ws) if ch in vocab)

    for word in words:
        if size([word]) > limit:
            raise ValueError(f"a single word has more than {limit} phonemes: {word[:40]!r}")
        if current and size(current + [word]) > limit:
            cut = max(
                (
                    i + 1
                    for i, w in enumerate(current)
                    if w and w[-1] in languages.SENTENCE_ENDS + languages.CLAUSE_ENDS
                ),
                default=len(current),
            )
            pieces.append(" ".join(current[:cut]))
            current = current[cut:]
            while current and size(current + [word]) > limit:  # punctuation cut left too much behind
                pieces.append(" ".join(current))
                current = []
        current.append(word)
    if current:
        pieces.append(" ".join(current))
    return [p.strip() for p in pieces if p.strip()]


#: upstream's KPipeline.join_timestamps counts from the start-of-text token's frames less 3 (75 ms;
#: its own comment asks whether -3 is right), so every time is up to 3 frames early; zoo keeps the
#: same lead so that its word timings and upstream's agree
LEAD_FRAMES = 3


def word_timings(
    piece: str,
    counts: Any,
    vocab: dict[str, int],
    spans: list[tuple[str, int, int]],
    offset: float,
    seconds_per_frame: float,
) -> list[Timing]:
    """Timings of the words whose spans (in ``piece``) it holds, from the frames each phoneme got
    (``counts``: one per token, the boundary tokens at both ends included): a word runs from its
    first phoneme's frames to its last's, a space between two words is split at its middle, and
    every time is ``LEAD_FRAMES`` early (at most the first token's frames), as upstream's
    join_timestamps. ``offset``: seconds of
    audio before the piece."""
    counts = np.asarray(counts, dtype=np.float64).reshape(-1)
    start = np.zeros(len(piece) + 1)  # frames before character k (characters outside the vocabulary take none)
    position, token = float(counts[0]), 1
    for k, ch in enumerate(piece):
        start[k] = position
        if ch in vocab:
            position += float(counts[token])
            token += 1
    start[len(piece)] = position

    def half_space(k: int) -> float:  # half the frames of the space at character k, if it is one
        return (start[k + 1] - start[k]) / 2 if 0 <= k < len(piece) and piece[k] == " " else 0.0

    lead = min(float(counts[0]), LEAD_FRAMES)  # upstream counts from max(0, first duration - 3)
    timings = []
    for word, a, b in spans:
        begin = start[a] - half_space(a - 1) - lead
        end = start[b] + half_space(b) - lead
        if end > begin:
            timings.append(
                Timing(
                    word,
                    round(offset + float(begin) * seconds_per_frame, 6),
                    round(offset + float(end) * seconds_per_frame, 6),
                )
            )
    return timings


def voices(constants: Mapping[str, Any]) -> list[str]:
    """The export's voice names (the list_voices hook)."""
    return list(RunConfig.load(constants["config"]).voices)


def run(runtime: Runtime, text: str, options: RunOptions) -> RunResult:
    from safetensors.numpy import load_file

    settings = options.typed_values()  # --set, typed once by the core (RUN_SETTINGS)
    cfg = RunConfig.load(runtime.constants["config"])
    voices = load_file(str(runtime.constants["voices"]))
    voice = options.voice or cfg.default_voice
    if voice not in voices:
        raise ValueError(f"unknown voice {voice!r}; this export has {', '.join(sorted(voices))}")
    vocab = cfg.vocab
    language = languages.resolve(settings.get("lang"), voice)
    spans: list[tuple[str, int, int]] | None = None
    if "phonemes" in settings:
        phonemes, g2p = settings["phonemes"], "given"
    else:
        converter, g2p = languages.g2p(language)
        phonemes = languages.phonemize(text, converter)
        if options.on_timings is not None:
            spans = languages.word_spans(text, phonemes, converter, language.code)
    if not any(ch in vocab for ch in phonemes):
        raise ValueError(f"no known phonemes in {phonemes!r}")
    limit = min(MAX_PHONEMES, max(cfg.buckets) - 2)
    rng = np.random.default_rng(options.seed)

    def noise(shape: tuple[int, ...]) -> Any:
        return rng.standard_normal(shape).astype(np.float32)

    cap = min(cfg.max_frames, MAX_DECODER_FRAMES)
    pieces, frames, report = [], 0, []
    queue = split_phonemes(phonemes, vocab, limit)
    cursor, written = 0, 0  # where the next piece lies in the phonemes; samples emitted so far
    while queue:
        piece = queue.pop(0)
        predicted = predict(runtime, piece, vocab, voices[voice], list(cfg.buckets), settings.get("speed", 1.0))
        counts = predicted[2]
        if int(counts.sum()) > cap:  # too long for one decoder call: two shorter pieces
            queue[:0] = list(halve(piece))
            continue
        audio = decode(runtime, predicted, noise)
        pieces.append(audio)
        options.emit(audio)
        if spans is not None:
            at = phonemes.find(piece, cursor)
            mine = [(w, a - at, b - at) for w, a, b in spans if at <= a and b <= at + len(piece)] if at >= 0 else []
            cursor = at + len(piece) if at >= 0 else cursor
            options.emit_timings(
                word_timings(
                    piece,
                    counts,
                    vocab,
                    mine,
                    written / cfg.sample_rate,
                    len(audio) / cfg.sample_rate / max(1, int(counts.sum())),
                )
            )
        written += len(audio)
        frames += int(counts.sum())
        report.append(
            {"phonemes": piece, "tokens": len(counts), "frames": int(counts.sum()), "durations": counts.tolist()}
        )
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    segments = tuple(int(d) for piece in report for d in piece["durations"])
    return RunResult(
        audio,
        cfg.sample_rate,
        frames,
        {"voice": voice, "lang": language.code, "language": language.name, "g2p": g2p, "pieces": report},
        segments,
    )
