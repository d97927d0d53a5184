"""Kokoro run loop against KModel.forward (same noise, same STFT tie-break), torch modules as the components."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.plugins.kokoro.options import RUN_SETTINGS

pytest.importorskip("kokoro", reason="kokoro is not installed (pip install zoo-tts[kokoro])")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def small():
    from zoo.core import WeightsSource
    from zoo.plugins.kokoro.options import SMALL
    from zoo.plugins.kokoro.reference import load

    return load(WeightsSource.random(0), SMALL).model


class ModuleRuntime:
    """The loop's runtime interface over plain torch modules."""

    def __init__(self, modules):
        self.modules = modules

    def __call__(self, component, inputs, function="main"):
        with torch.no_grad():
            out = self.modules[component](*(torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values()))
        names = ["audio"] if component == "decoder" else ["duration", "d", "t_en"]
        return {n: o.numpy() for n, o in zip(names, out if isinstance(out, tuple) else (out,))}


def _speak(small, phonemes, bucket):
    from zoo.plugins.kokoro import loop
    from zoo.plugins.kokoro.decoder import Decoder, deterministic_upstream
    from zoo.plugins.kokoro.traceables import Predictor

    runtime = ModuleRuntime(
        {"predictor": Predictor(small.model, bucket).eval(), "decoder": Decoder(small.model).eval()}
    )
    rng = np.random.default_rng(1)
    drawn = {}

    def noise(shape):
        drawn["noise"] = rng.standard_normal(shape).astype(np.float32)
        return drawn["noise"]

    audio, frames = loop.synthesize(
        runtime, phonemes, small.config["vocab"], small.voices["random"], [bucket], noise=noise
    )
    with torch.no_grad(), deterministic_upstream(small.model, drawn["noise"]):
        want = small.model(phonemes, small.voices["random"][len(phonemes) - 1], 1, return_output=True)
    return audio, frames, want.audio.numpy().reshape(-1), want.pred_dur.numpy()


PHONEMES = "həlˈO wˈɜːld. hˌW ɑːɹ juː tədˈA?"  # espeak-ng's en-us for "Hello world. How are you today?"


def test_espeak_g2p_works_offline():
    from misaki import espeak

    from zoo.plugins.kokoro import loop

    assert loop.phonemize("Hello world. How are you today?", espeak.EspeakG2P(language="en-us")) == PHONEMES


def test_utterance_matches_kmodel_with_an_exact_bucket(small):
    from zoo.plugins.kokoro import loop

    length = len(loop.tokens(PHONEMES, small.config["vocab"]))
    audio, frames, want, want_frames = _speak(small, PHONEMES, length)
    assert np.array_equal(frames, want_frames)  # identical durations
    assert audio.shape == want.shape == (600 * int(frames.sum()),)
    assert np.abs(audio - want).max() / np.abs(want).max() <= 1e-3  # measured 2e-5, first frame included


def test_padded_bucket_keeps_durations(small):
    """A padded bucket gives identical durations; its features differ from KModel's by ~1e-6
    (other GEMM shapes), which the decoder, chaotic with random weights, turns into different
    samples (a 1e-6 input perturbation alone measures 0.047 spectral distance): the spectra agree."""
    from zoo.core.validation.metrics import spectral_distance

    audio, frames, want, want_frames = _speak(small, PHONEMES, 64)
    assert np.array_equal(frames, want_frames) and audio.shape == want.shape
    assert spectral_distance(audio, want) <= 0.1  # measured 0.058


def test_long_phonemes_split_at_punctuation():
    from zoo.plugins.kokoro import loop
    from zoo.plugins.kokoro.config import VOCAB

    text = " ".join(["həlˈO wˈɜːld."] * 30)
    pieces = loop.split_phonemes(text, VOCAB, 62)
    assert " ".join(pieces) == text
    assert all(sum(ch in VOCAB for ch in p) <= 62 for p in pieces)
    assert all(p.endswith(".") for p in pieces)  # cut after sentence punctuation
    with pytest.raises(ValueError, match="single word"):
        loop.split_phonemes("ə" * 70, VOCAB, 62)


def test_run_settings_are_typed_once_and_never_ignored():
    from zoo.core import RunOptions
    from zoo.plugins.kokoro import loop

    def typed(settings):
        return RunOptions(settings=settings).resolved(RUN_SETTINGS, "kokoro").values

    assert typed({"speed": "1.2", "phonemes": "ə"}) == {"speed": 1.2, "phonemes": "ə"}
    with pytest.raises(ValueError, match="unknown kokoro run option"):
        typed({"temperature": "1"})
    with pytest.raises(ValueError, match="speed"):
        typed({"speed": "0"})
    # a loop handed --set values nobody typed refuses them rather than ignoring them
    with pytest.raises(ValueError, match="were not typed"):
        loop.run(None, "x", RunOptions(settings={"speed": "2"}))


def test_zoo_run_torch_backend_matches_kmodel(small, tmp_path):
    """`zoo run kokoro --backend torch` (the installed plugin through the core's run) against
    KModel.forward on the same phonemes, voice and noise: the whole utterance, sample by sample."""
    from zoo.core import RunOptions, WeightsSource
    from zoo.core.host.plugins import PluginHost
    from zoo.core.run.speak import run
    from zoo.plugins.kokoro.decoder import deterministic_upstream

    phonemes = PHONEMES
    summary = run(
        PluginHost(),
        "kokoro",
        "(ignored: phonemes given)",
        tmp_path / "out.wav",
        backend="torch",
        weights=WeightsSource.random(0),
        variant="small-fp32",
        options=RunOptions(seed=7, settings={"phonemes": phonemes}).resolved(RUN_SETTINGS, "kokoro"),
    )
    audio = summary.result.audio
    assert summary.runtime.calls == {"predictor.tokens64": 1, "decoder": 1}
    assert (tmp_path / "out.wav").stat().st_size == 44 + 2 * len(audio)
    # the loop's noise: numpy's default_rng(seed), standard normal, [1, 600 * frames, 9]
    noise = np.random.default_rng(7).standard_normal((1, len(audio), 9)).astype(np.float32)
    with torch.no_grad(), deterministic_upstream(small.model, noise):
        want = small.model(phonemes, small.voices["random"][len(phonemes) - 1], 1, return_output=True)
    assert summary.result.frames == int(want.pred_dur.sum())
    want_audio = want.audio.numpy().reshape(-1)
    assert audio.shape == want_audio.shape
    assert np.abs(audio - want_audio).max() / np.abs(want_audio).max() <= 1e-3


def test_halve_cuts_at_the_sentence_nearest_the_middle():
    from zoo.plugins.kokoro import loop

    assert loop.halve("a b. c d e. f g h i j. k") == ("a b. c d e.", "f g h i j. k")
    assert loop.halve("a b, c d e f") == ("a b,", "c d e f")
    assert loop.halve("a b c d") == ("a b", "c d")
    with pytest.raises(ValueError, match="single word"):
        loop.halve("abc")


def test_a_long_text_is_split_within_the_decoder_frame_cap_and_written_as_it_is_spoken(tmp_path):
    """Slow speech (speed 0.2: five times the frames) of a long phoneme string: no decoder call
    exceeds MAX_DECODER_FRAMES, the pieces say every phoneme once, in order, and each piece is
    written to the WAV as soon as it is decoded (the WAV holds exactly the returned audio)."""
    from helpers import read_wav

    from zoo.core import RunOptions, WeightsSource
    from zoo.core.host.plugins import PluginHost
    from zoo.core.registry.store import Registry
    from zoo.core.run.speak import execute, plan
    from zoo.plugins.kokoro import loop

    phonemes = " ".join([PHONEMES] * 6)
    written: list[float] = []
    host = PluginHost()
    request = plan(
        host,
        "kokoro",
        "(phonemes given)",
        tmp_path / "long.wav",
        backend="torch",
        weights=WeightsSource.random(0),
        variant="small-fp32",
        options=RunOptions(settings={"phonemes": phonemes, "speed": "0.2"}).resolved(RUN_SETTINGS, "kokoro"),
    )
    summary = execute(host, request, Registry(tmp_path / "r.toml"), progress=written.append)
    pieces = summary.result.info["pieces"]
    assert len(pieces) > 1 and max(p["frames"] for p in pieces) <= loop.MAX_DECODER_FRAMES
    assert " ".join(p["phonemes"] for p in pieces) == phonemes
    assert summary.result.frames == sum(p["frames"] for p in pieces) > loop.MAX_DECODER_FRAMES
    assert len(written) == len(pieces) and written == sorted(written)  # one report per piece, growing
    calls = sum(summary.runtime.calls.values())
    assert 2 <= summary.calls_before_first_audio < calls and 0 < summary.first_audio_seconds < summary.wall_seconds
    audio = read_wav(tmp_path / "long.wav")
    assert len(audio) == len(summary.result.audio) and abs(written[-1] - len(audio) / 24000) < 1e-9
    assert np.abs(audio - summary.result.audio).max() <= 1 / 32767 + 1e-6  # 16-bit rounding only


WORDS_TEXT = "Hello, world! I paid $5 to Dr. Smith today; then we left."


def _upstream_tokens(phonemes: str):
    """The phonemes as upstream's English tokens (misaki MTokens): each space-separated word split
    into its marks and its sounds, the space on the last of them, as misaki's G2P makes them; with
    each token's character span in ``phonemes``."""
    from misaki.en import MToken

    from zoo.plugins.kokoro.languages import PUNCTUATION

    tokens, spans, at = [], [], 0
    words = phonemes.split(" ")
    for n, word in enumerate(words):
        parts, current = [], ""
        for ch in word:
            if current and (ch in PUNCTUATION) != (current[-1] in PUNCTUATION):
                parts.append(current)
                current = ""
            current += ch
        parts.append(current)
        for k, part in enumerate(parts):
            tokens.append(
                MToken(
                    text=part,
                    tag="",
                    whitespace=" " if k == len(parts) - 1 and n < len(words) - 1 else "",
                    phonemes=part,
                )
            )
            spans.append((at, at + len(part)))
            at += len(part)
        at += 1
    return tokens, spans


def test_word_timestamps_follow_upstreams_join_timestamps(small):
    """Each word's start and end, from the durations the predictor gave the loop, against upstream's
    KPipeline.join_timestamps on the same phonemes and durations: equal (acceptance: within one
    frame, 25 ms). Mutations caught: no lead (3 frames off), no half-space (a space's half)."""
    from kokoro.pipeline import KPipeline

    from zoo.plugins.kokoro import languages, loop
    from zoo.plugins.kokoro.traceables import Predictor

    convert = loop.english_g2p()
    phonemes = languages.phonemize(WORDS_TEXT, convert)
    spans = languages.word_spans(WORDS_TEXT, phonemes, convert)
    assert [w for w, _, _ in spans] == [
        "Hello",
        "world",
        "I",
        "paid",
        "$5",
        "to",
        "Dr",
        "Smith",
        "today",
        "then",
        "we",
        "left",
    ]
    vocab = small.config["vocab"]
    runtime = ModuleRuntime({"predictor": Predictor(small.model, 128).eval()})
    counts = loop.predict(runtime, phonemes, vocab, small.voices["random"], [128])[2]
    ours = loop.word_timings(phonemes, counts, vocab, spans, 0.0, 600 / 24000)
    tokens, places = _upstream_tokens(phonemes)
    KPipeline.join_timestamps(tokens, torch.from_numpy(counts))
    assert len(ours) == len(spans) == 12
    for timing, (_, a, b) in zip(ours, spans):  # a word's upstream tokens: "$5" is two ("dollar", "five")
        covering = [t for t, (p, q) in zip(tokens, places) if a <= p and q <= b]
        start, end = covering[0].start_ts, covering[-1].end_ts
        assert abs(timing.start - start) <= 1e-6 and abs(timing.end - end) <= 1e-6, (timing, start, end)
    assert all(a.end <= b.start + 1e-9 and a.start < a.end for a, b in zip(ours, ours[1:]))


def test_zoo_run_writes_word_timestamps_as_srt_vtt_and_json(tmp_path):
    """`zoo run kokoro ... --timestamps words.srt`: every word of the text once, in order, start <
    end, not overlapping, within the WAV; a subtitle parser reads the file back; .vtt and .json too."""
    import json
    import wave

    import srt

    from zoo.core import RunOptions, WeightsSource
    from zoo.core.host.plugins import PluginHost
    from zoo.core.run.speak import run

    text = "Hello there. " + WORDS_TEXT + " The end."
    words = [w.strip(",.!;") for w in text.split()]
    host = PluginHost()
    for suffix in (".srt", ".vtt", ".json"):
        out = tmp_path / f"words{suffix}"
        summary = run(
            host,
            "kokoro",
            text,
            tmp_path / "out.wav",
            backend="torch",
            weights=WeightsSource.random(0),
            variant="small-fp32",
            options=RunOptions(voice="random"),
            timestamps=out,
        )
        with wave.open(str(tmp_path / "out.wav")) as w:
            seconds = w.getnframes() / w.getframerate()
        assert [t.text for t in summary.timings] == words
        assert all(t.start < t.end <= seconds for t in summary.timings)
        assert all(a.end <= b.start for a, b in zip(summary.timings, summary.timings[1:]))
        body = out.read_text()
        if suffix == ".srt":
            cues = list(srt.parse(body))
            assert [c.content for c in cues] == words
            assert all(
                abs(c.start.total_seconds() - t.start) <= 6e-4 and abs(c.end.total_seconds() - t.end) <= 6e-4
                for c, t in zip(cues, summary.timings)
            )
        elif suffix == ".vtt":
            assert body.startswith("WEBVTT\n\n") and body.count(" --> ") == len(words)
        else:
            data = json.loads(body)
            assert [t["text"] for t in data["timings"]] == words and data["audio"].endswith("out.wav")


def test_word_timestamps_for_text_without_spaces(tmp_path):
    """Mandarin and Japanese: words from the segmenters misaki's front ends use (jieba, fugashi),
    each matched to its phonemes the same way; where the G2P merges words (a Japanese counter,
    八時 -> one phoneme word) the counts do not add up and no timings are claimed."""
    from zoo.core import RunOptions, WeightsSource
    from zoo.core.host.plugins import PluginHost
    from zoo.core.run.speak import run
    from zoo.plugins.kokoro import languages

    zh, _ = languages.g2p(languages.LANGUAGES["z"])
    text = "你好，你好吗？火车早上八点出发。"
    spans = languages.word_spans(text, languages.phonemize(text, zh), zh, "z")
    assert [w for w, _, _ in spans] == ["你好", "你好", "吗", "火车", "早上", "八点", "出发"]
    ja, _ = languages.g2p(languages.LANGUAGES["j"])
    hello = "こんにちは、お元気ですか。"
    assert [w for w, _, _ in languages.word_spans(hello, languages.phonemize(hello, ja), ja, "j")] == [
        "こんにちは",
        "お",
        "元気",
        "です",
        "か",
    ]
    counter = "電車は朝八時に出発します。"
    assert languages.word_spans(counter, languages.phonemize(counter, ja), ja, "j") is None
    summary = run(
        PluginHost(),
        "kokoro",
        text,
        tmp_path / "zh.wav",
        backend="torch",
        weights=WeightsSource.random(0),
        variant="small-fp32",
        options=RunOptions(settings={"lang": "z"}).resolved(RUN_SETTINGS, "kokoro"),
        timestamps=tmp_path / "zh.srt",
    )
    assert [t.text for t in summary.timings] == [w for w, _, _ in spans]
    assert all(a.end <= b.start and a.start < a.end for a, b in zip(summary.timings, summary.timings[1:]))
