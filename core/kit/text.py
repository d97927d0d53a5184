"""Splitting long text into pieces a fixed-size export can speak, at the most natural boundary.

A run loop whose model has fixed caches (a KV cache of N slots, a decoder of N frames) speaks
a long text as consecutive pieces. ``pieces(text, fits)`` cuts at sentence ends first, then
at clause punctuation, then between words, and only as a last resort inside a word, and
packs neighbouring sentences together while ``fits`` accepts the result, so each piece is as
long as the model allows and no sentence is cut when a whole one fits.
"""

from __future__ import annotations

import re
from typing import Callable

_CLOSERS = "\"'\u201d\u2019)\\]\u00bb\u300d\u300f\uff09"
#: a sentence: up to Latin/Devanagari end punctuation followed by a space (so "3.5" and "e.g.x" stay
#: whole), or up to CJK full stops, which need no space; closing quotes and brackets stay with it
SENTENCE = re.compile(rf"\S.*?(?:[.!?\u2026\u0964]+[{_CLOSERS}]*(?=\s|$)|[\u3002\uff01\uff1f]+[{_CLOSERS}]*|$)", re.S)
#: a clause: up to a comma, semicolon, colon or dash (Latin ones followed by a space; CJK ones need none)
CLAUSE = re.compile(rf"\S.*?(?:[,;:\u2013\u2014]+[{_CLOSERS}]*(?=\s|$)|[\u3001\uff0c\uff1b\uff1a]+|$)", re.S)
WORD = re.compile(r"\S+")


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    return [" ".join(part.split()) for part in pattern.findall(text) if part.strip()]


def pieces(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Consecutive pieces of ``text`` (whitespace-normalised), each accepted by ``fits``,
    together saying every word of ``text`` once and in order.

    ``fits`` must accept any single character; it is asked about growing candidates, so it
    should be cheap (a token count, a length).
    """
    cuts: list[tuple[str, bool]] = []  # (piece, may be joined to a neighbour with a space)
    for sentence in _pack(_cut(text, SENTENCE), fits):
        if fits(sentence):
            cuts.append((sentence, True))
            continue
        for clause in _pack(_cut(sentence, CLAUSE), fits):
            if fits(clause):
                cuts.append((clause, True))
                continue
            for words in _pack(_cut(clause, WORD), fits):
                cuts.extend([(words, True)] if fits(words) else [(part, False) for part in _characters(words, fits)])
    out: list[str] = []
    joinable = False
    for piece, may_join in cuts:  # a clause cut short may share a piece with what follows it
        if out and joinable and may_join and fits(_join(out[-1], piece)):
            out[-1] = _join(out[-1], piece)
        else:
            out.append(piece)
        joinable = may_join
    return out


def _is_cjk(char: str) -> bool:
    return "\u3000" <= char <= "\u9fff" or "\uff00" <= char <= "\uffef"


def _join(a: str, b: str) -> str:
    """Neighbouring pieces: a space between them, except between CJK text, written without spaces."""
    return a + b if _is_cjk(a[-1]) and _is_cjk(b[0]) else f"{a} {b}"


def _pack(parts: list[str], fits: Callable[[str], bool]) -> list[str]:
    """Join neighbouring parts while the join fits; a part that does not fit alone stays alone."""
    packed: list[str] = []
    for part in parts:
        if packed and fits(_join(packed[-1], part)):
            packed[-1] = _join(packed[-1], part)
        else:
            packed.append(part)
    return packed


def _characters(word: str, fits: Callable[[str], bool]) -> list[str]:
    """A word longer than a piece (a long number, a URL): the longest prefixes that fit."""
    out, start = [], 0
    while start < len(word):
        end = start + 1
        while end < len(word) and fits(word[start : end + 1]):
            end += 1
        out.append(word[start:end])
        start = end
    return out
