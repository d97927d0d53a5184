"""Text preparation for the PocketTTS run loop, without torch.

Follows the rules of pocket-tts 4.0.1 (``models/text_chunking.py``): whitespace
and character clean-up, a capital first letter, sentence-final punctuation, a
frames-after-EOS guess from the word count, and splitting long inputs on
sentence boundaries (then commas) into chunks of at most ``max_tokens``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

TERMINAL = ".!?\u2026"
WEAK = ",;:-\u2013\u2014"
CLOSERS = "\"'\u201d\u2019)]\u00bb"


@dataclass(frozen=True)
class TextRules:
    pad_with_spaces_for_short_inputs: bool = False
    remove_semicolons: bool = False
    append_terminal_punctuation: bool = True
    capitalize_first_letter: bool = True
    replace_characters: tuple[tuple[str, str], ...] = ()


def end_with_punctuation(text: str) -> str:
    body = text.rstrip(CLOSERS + " ")
    tail = text[len(body) :].strip()
    if not body or body[-1] in TERMINAL:
        return text
    if body[-1] in WEAK:
        return body.rstrip(WEAK + " ") + "." + tail
    return text + "."


def prepare(text: str, rules: TextRules) -> tuple[str, int]:
    """The prompt the model sees, and how many frames to keep after EOS (a guess from the length)."""
    text = text.strip()
    if rules.replace_characters:
        text = " ".join(text.translate(str.maketrans(dict(rules.replace_characters))).split())
        text = re.sub(r"([.!?\u2026])\s*[,;:]", r"\1", text)
    if not text:
        raise ValueError("text to speak is empty")
    text = text.replace("\n", " ").replace("\r", " ").replace("  ", " ")
    if rules.remove_semicolons:
        text = text.replace(";", ",")
    frames_after_eos = 3 if len(text.split()) <= 4 else 1
    if rules.capitalize_first_letter and not text[0].isupper():
        text = text[0].upper() + text[1:]
    if rules.append_terminal_punctuation:
        text = end_with_punctuation(text)
    if rules.pad_with_spaces_for_short_inputs and len(text.split()) < 5:
        text = " " * 8 + text
    return text, frames_after_eos


Encode = Callable[[str], list[int]]
Decode = Callable[[list[int]], str]


def _boundaries(tokens: list[int], marks: set[int], decode: Decode | None = None) -> list[int]:
    """Start indices of segments: a segment ends after a run of boundary tokens."""
    starts = [0]
    after_mark = False
    for i, token in enumerate(tokens):
        if token in marks:
            after_mark = True
            continue
        if after_mark:
            if decode is not None and _inside_number(tokens, i, decode):
                after_mark = False
                continue
            starts.append(i)
        after_mark = False
    return starts + [len(tokens)]


def _inside_number(tokens: list[int], i: int, decode: Decode) -> bool:
    """True when tokens[i] continues a decimal number whose period precedes it (3.5)."""
    before, after = decode(tokens[:i]), decode(tokens[i:])
    return len(before) >= 2 and before[-1] == "." and before[-2].isdigit() and bool(after) and after[0].isdigit()


def _segments(tokens: list[int], bounds: list[int], decode: Decode) -> list[tuple[int, str]]:
    return [(b - a, decode(tokens[a:b])) for a, b in zip(bounds, bounds[1:])]


def split(text: str, encode: Encode, decode: Decode, max_tokens: int, rules: TextRules) -> list[str]:
    """Chunks of whole sentences (commas for overlong ones), each within ``max_tokens`` when possible."""
    text, _ = prepare(text, rules)
    tokens = encode(text.strip())
    sentence_marks = set(encode(".!...?")[1:])
    sentences = _segments(tokens, _boundaries(tokens, sentence_marks, decode), decode)
    comma_marks = set(encode(",;:")[1:])
    pieces: list[tuple[int, str]] = []
    for count, sentence in sentences:
        if count > max_tokens:
            sub = encode(sentence.strip())
            parts = _segments(sub, _boundaries(sub, comma_marks), decode)
            if len(parts) > 1:
                pieces.extend(parts)
                continue
        pieces.append((count, sentence))
    chunks: list[str] = []
    current, size = "", 0
    for count, piece in pieces:
        if not current:
            current, size = piece, count
        elif size + count > max_tokens:
            chunks.append(current.strip())
            current, size = piece, count
        else:
            current, size = current + " " + piece, size + count
    if current:
        chunks.append(current.strip())
    return chunks
