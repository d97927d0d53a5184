"""kokoro in every language KPipeline knows: the G2P runs offline (or says what is missing), and
the run loop speaks each language's phonemes with upstream's durations."""

from __future__ import annotations

import pytest

pytest.importorskip("kokoro", reason="kokoro is not installed (pip install zoo-tts[kokoro])")
torch = pytest.importorskip("torch")

from zoo.core import RunOptions, WeightsSource  # noqa: E402
from zoo.core.host.plugins import PluginHost  # noqa: E402
from zoo.core.host.session import ModelSession  # noqa: E402
from zoo.plugins.kokoro import languages, loop  # noqa: E402
from zoo.plugins.kokoro.options import RUN_SETTINGS  # noqa: E402

TEXTS = {
    "a": "Hello world. How are you today?",
    "b": "Hello world. How are you today?",
    "e": "¿Qué tal? Hola, mundo.",
    "f": "Bonjour à tous. Comment ça va ?",
    "h": "नमस्ते दुनिया। आप कैसे हैं?",
    "i": "Ciao a tutti. Come stai?",
    "j": "こんにちは、世界。",
    "p": "Olá a todos. Como vai?",
    "z": "你好，世界。",
}


@pytest.fixture(scope="module")
def session():
    return ModelSession(PluginHost(), "kokoro", "small-fp32", WeightsSource.random(0))


@pytest.fixture(scope="module")
def runtime(session, tmp_path_factory):
    return session.torch_runtime(tmp_path_factory.mktemp("kokoro-constants"))


def test_every_pipeline_language_is_known():
    from kokoro.pipeline import ALIASES, LANG_CODES

    assert set(languages.LANGUAGES) == set(LANG_CODES) and set(TEXTS) == set(LANG_CODES)
    assert {lang.alias: code for code, lang in languages.LANGUAGES.items()} == ALIASES
    for code, language in languages.LANGUAGES.items():  # espeak languages: upstream's own espeak voice
        if code not in "abjz":
            assert language.espeak == LANG_CODES[code]


@pytest.mark.parametrize("code", list(TEXTS))
def test_g2p_offline_and_upstream_durations(code, session, runtime):
    """The language's G2P offline; the loop (torch backend, random weights) gives each token
    upstream KModel's duration for the same phonemes: frames per phoneme as upstream's."""
    language = languages.LANGUAGES[code]
    vocab = session.reference().model.config["vocab"]
    convert, name = languages.g2p(language)  # the kokoro extra carries the Japanese and Mandarin front ends
    if code in "jz":
        assert name == ("misaki.ja.JAG2P" if code == "j" else "misaki.zh.ZHG2P")  # upstream's, not a stand-in
    phonemes = languages.phonemize(TEXTS[code], convert)
    letters = [ch for ch in phonemes if not ch.isspace()]
    assert letters and sum(ch in vocab for ch in letters) >= 0.9 * len(letters), (name, phonemes)
    result = loop.run(
        runtime, TEXTS[code], RunOptions(seed=3, settings={"lang": language.alias}).resolved(RUN_SETTINGS, "kokoro")
    )
    assert result.info["lang"] == code and result.info["g2p"] == name
    spoken = " ".join(p["phonemes"] for p in result.info["pieces"])
    assert spoken == phonemes.strip()
    model = session.reference().model
    pack = model.voices["random"]
    frames = 0
    for piece in result.info["pieces"]:
        with torch.no_grad():
            want = model.model(piece["phonemes"], pack[len(piece["phonemes"]) - 1], 1, return_output=True)
        assert piece["durations"] == want.pred_dur.tolist()  # upstream's frames for every token
        frames += int(want.pred_dur.sum())
    assert result.frames == frames >= len(loop.tokens(phonemes, vocab))  # at least a frame per token
    assert len(result.audio) == 600 * frames


@pytest.mark.parametrize("code", ["j", "z"])
def test_a_missing_front_end_stops_the_run_naming_it(code, runtime, monkeypatch):
    """Without misaki's Japanese / Mandarin module (an install without the kokoro extra's
    packages), the run stops before speaking, naming the extra and --set phonemes=."""
    import sys

    import misaki

    module = {"j": "ja", "z": "zh"}[code]
    monkeypatch.delattr(misaki, module, raising=False)
    monkeypatch.setitem(sys.modules, f"misaki.{module}", None)  # import fails as if not installed
    with pytest.raises(languages.G2PUnavailable) as info:
        languages.g2p(languages.LANGUAGES[code])
    message = str(info.value)
    assert f"misaki[{module}]" in message and "zoo-tts[kokoro]" in message and "--set phonemes=" in message
    with pytest.raises(languages.G2PUnavailable):
        loop.run(runtime, TEXTS[code], RunOptions(settings={"lang": code}).resolved(RUN_SETTINGS, "kokoro"))


def test_language_from_the_voice_name_or_the_setting():
    assert languages.resolve(None, "ef_dora").code == "e"
    assert languages.resolve(None, "zf_xiaobei").code == "z"
    assert languages.resolve(None, "random").code == "a"  # not a voice of a language: American English
    assert languages.resolve("fr-fr", "af_heart").code == "f"  # the setting wins
    assert RunOptions(settings={"lang": "pt-br"}).resolved(RUN_SETTINGS, "kokoro").values == {"lang": "pt-br"}
    described = next(s for s in RUN_SETTINGS if s.name == "lang").describe()  # what zoo info shows
    assert "default: the voice name's first letter" in described and "the export's" not in described
    with pytest.raises(ValueError, match="one of a"):
        RunOptions(settings={"lang": "klingon"}).resolved(RUN_SETTINGS, "kokoro")


def test_the_splitter_cuts_after_each_languages_punctuation():
    from zoo.plugins.kokoro.config import VOCAB

    words = {"latin": "ˈola, kˈe tˈal. ", "cjk": "ni˧˥ xau˨˩˦。 ʂɻ˥˩ tɕjɛ˥˩、 "}
    for kind, sentence in words.items():
        text = (sentence * 20).strip()
        pieces = loop.split_phonemes(text, VOCAB, 40)
        assert " ".join(pieces) == text and len(pieces) > 1
        assert all(p[-1] in languages.SENTENCE_ENDS + languages.CLAUSE_ENDS for p in pieces[:-1]), (kind, pieces)
    assert loop.halve("a b。 c d e") == ("a b。", "c d e")
    assert loop.halve("¿a b c d") == ("¿a b", "c d")  # an opening mark is no cut
