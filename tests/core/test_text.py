"""core.text.pieces: long text cut into pieces a fixed-size export can speak."""

from __future__ import annotations

import random

import pytest

from zoo.core.kit.text import pieces

WORDS = "the quick brown fox jumps over a lazy dog while seven bright stars shine above quiet hills".split()


def _paragraph(seed: int, sentences: int = 40) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 25))]
        for i in rng.sample(range(len(words) - 1), k=min(2, len(words) - 1)):
            words[i] += rng.choice([",", ";", ":", ""])
        out.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", "…", '."']))
    return " ".join(out)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("limit", [12, 40, 150, 600])
def test_every_word_once_in_order_and_every_piece_fits(seed, limit):
    text = _paragraph(seed)
    fits = lambda s: len(s) <= limit  # noqa: E731
    out = pieces(text, fits)
    assert all(fits(p) for p in out)
    assert " ".join(out).split() == text.split()  # no word lost, repeated or cut (no word here exceeds 12 characters)


def test_whole_sentences_when_they_fit_and_packed_together():
    text = "One two three. Four five six! Seven eight nine? Ten."
    assert pieces(text, lambda s: len(s) <= 30) == ["One two three. Four five six!", "Seven eight nine? Ten."]
    assert pieces(text, lambda s: len(s) <= 1000) == [text]


def test_a_long_sentence_is_cut_at_clauses_before_words():
    text = "First part of it, second part of it; third part of it."
    assert pieces(text, lambda s: len(s) <= 20) == ["First part of it,", "second part of it;", "third part of it."]


def test_numbers_and_abbreviations_are_not_sentence_ends():
    assert pieces("It costs 3.5 dollars. Next.", lambda s: len(s) <= 20) == ["It costs 3.5", "dollars. Next."]


def test_cjk_sentences_need_no_space_and_join_without_one():
    text = "今天天气很好。我们去公园吧！好的。"
    assert pieces(text, lambda s: len(s) <= 8) == ["今天天气很好。", "我们去公园吧！", "好的。"]
    assert pieces(text, lambda s: len(s) <= 14) == ["今天天气很好。我们去公园吧！", "好的。"]


def test_a_word_longer_than_a_piece_is_cut_into_the_longest_prefixes():
    assert pieces("see https://example.com/a/very/long/path now", lambda s: len(s) <= 10) == [
        "see",
        "https://ex",
        "ample.com/",
        "a/very/lon",
        "g/path",
        "now",
    ]
