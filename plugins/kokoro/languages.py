"""The languages kokoro 0.9.4's KPipeline knows, and the G2P each one uses (offline).

A language is chosen with ``--set lang=`` (a code or upstream's alias), else implied by the
voice name's first letter as upstream does (``ef_dora`` -> Spanish), else American English.

* a / b — American / British English: misaki's English G2P, which needs a spaCy model it
  downloads on first use; offline, misaki's espeak-ng G2P (en-us / en-gb) stands in;
* e, f, h, i, p — Spanish, French, Hindi, Italian, Brazilian Portuguese: espeak-ng through
  misaki (upstream's own choice for these);
* j, z — Japanese and Mandarin: misaki's own front ends, as upstream (``misaki[ja]``: fugashi
  with a UniDic dictionary — zoo's kokoro extra installs unidic-lite, which carries it, where
  misaki's ``unidic`` needs a separate download; ``misaki[zh]``: jieba, pypinyin, cn2an, whose
  data ship with them). Where they are missing the run stops saying what is missing and how to
  give phonemes instead (``--set phonemes=``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    #: upstream's alias for the code (KPipeline accepts either)
    alias: str
    #: espeak-ng voice (the G2P for espeak languages, the offline stand-in for English)
    espeak: str = ""
    #: the misaki extra a language's own front end needs ("" when espeak-ng is the G2P)
    extra: str = ""


LANGUAGES = {
    lang.code: lang
    for lang in (
        Language("a", "American English", "en-us", espeak="en-us", extra="en"),
        Language("b", "British English", "en-gb", espeak="en-gb", extra="en"),
        Language("e", "Spanish", "es", espeak="es"),
        Language("f", "French", "fr-fr", espeak="fr-fr"),
        Language("h", "Hindi", "hi", espeak="hi"),
        Language("i", "Italian", "it", espeak="it"),
        Language("j", "Japanese", "ja", extra="ja"),
        Language("p", "Brazilian Portuguese", "pt-br", espeak="pt-br"),
        Language("z", "Mandarin Chinese", "zh", extra="zh"),
    )
}

#: what ``--set lang=`` accepts: the codes and upstream's aliases
CHOICES = tuple(LANGUAGES) + tuple(lang.alias for lang in LANGUAGES.values())

#: marks after which a long text is best cut (sentence ends first), in any of the languages:
#: the Latin ones, the ellipsis, closing guillemets, and the CJK full-width forms
SENTENCE_ENDS = ".!?…。！？"
CLAUSE_ENDS = ";:,»、，；："


class G2PUnavailable(ValueError):
    """The language's G2P cannot run here (a package is missing); the message says what to do."""


def resolve(lang: str | None, voice: str | None) -> Language:
    """``lang`` (code or alias) if given, else the voice's first letter when it is a code, else 'a'."""
    if lang:
        for language in LANGUAGES.values():
            if lang in (language.code, language.alias):
                return language
        raise ValueError(f"unknown language {lang!r}; one of {', '.join(CHOICES)}")
    if voice and voice[0] in LANGUAGES and (len(voice) == 1 or voice[1] in "fm_"):
        return LANGUAGES[voice[0]]
    return LANGUAGES["a"]


def g2p(language: Language) -> tuple[Callable[[str], Any], str]:
    """(text -> phonemes, a name for the report) for the language, offline."""
    from misaki import espeak

    if language.code in "ab":
        try:
            from misaki import en

            british = language.code == "b"
            return en.G2P(trf=False, british=british, fallback=espeak.EspeakFallback(british=british)), "misaki.en.G2P"
        except Exception:  # noqa: BLE001 - misaki's full G2P needs a spaCy model it downloads at run time
            return espeak.EspeakG2P(language=language.espeak), f"misaki.espeak.EspeakG2P({language.espeak})"
    if language.espeak:
        return espeak.EspeakG2P(language=language.espeak), f"misaki.espeak.EspeakG2P({language.espeak})"
    try:
        if language.code == "j":
            from misaki import ja

            return ja.JAG2P(), "misaki.ja.JAG2P"
        from misaki import zh

        return zh.ZHG2P(version=None), "misaki.zh.ZHG2P"
    except Exception as exc:  # noqa: BLE001 - an import error deep inside the front end's dependencies
        raise G2PUnavailable(
            f"{language.name} needs misaki's {language.name} front end (misaki[{language.extra}]; pip install "
            "'zoo-tts[kokoro]' "
            f"installs it for offline use), which cannot run here ({type(exc).__name__}: {exc}); "
            "give the phonemes instead: --set phonemes=..."
        ) from None


def phonemize(text: str, convert: Callable[[str], Any]) -> str:
    result = convert(text)
    return result[0] if isinstance(result, tuple) else result


#: marks that belong to no word's sound: a word's span in the phonemes leaves them out (upstream's
#: English tokens make each mark a token of its own)
PUNCTUATION = ';:,.!?¡¿—–…"«»“”()[]' + "、，；：。！？「」"


def text_words(text: str, lang: str = "a") -> list[str]:
    """The text's words: split at white space, or by the segmenters misaki's own front ends use for
    text without spaces (jieba for Mandarin, the fugashi tagger with UniDic for Japanese)."""
    if lang == "z":
        import jieba

        return [w for w in jieba.lcut(text) if w.strip()]
    if lang == "j":
        import fugashi

        return [w.surface for w in fugashi.Tagger()(text) if w.surface.strip()]
    return text.split()


def word_spans(
    text: str, phonemes: str, convert: Callable[[str], Any], lang: str = "a"
) -> list[tuple[str, int, int]] | None:
    """Each word of ``text`` (:func:`text_words`, marks around it dropped) with its span
    ``[start, end)`` in ``phonemes``, the G2P's output for the whole text. Each word is phonemized
    alone only to learn how many of the output's space-separated words it became ("$5" -> two; a
    mark alone, none: it sticks to its neighbour), and they are matched in order; the phonemes
    spoken stay the whole text's. None when the counts do not add up (a G2P that merges words,
    as Japanese counters do: 八時 -> one)."""
    words = text_words(text, lang)
    found = [(m.start(), m.end()) for m in re.finditer(r"\S+", phonemes)]
    counts = [0 if all(ch in PUNCTUATION for ch in word) else len(phonemize(word, convert).split()) for word in words]
    if sum(counts) != len(found):
        return None
    spans, index = [], 0
    for word, count in zip(words, counts):
        if count:
            start, end = found[index][0], found[index + count - 1][1]
            while start < end and phonemes[start] in PUNCTUATION:
                start += 1
            while end > start and phonemes[end - 1] in PUNCTUATION:
                end -= 1
            shown = word.strip(PUNCTUATION + "'")
            if start < end and shown:
                spans.append((shown, start, end))
        index += count
    return spans
