"""An offline stand-in for PocketTTS's tokenizer.

The real tokenizer (a SentencePiece vocabulary saved as tokenizers JSON) is
downloaded from the hub with the weights. Without network access the plugin
builds this one instead: a Unigram tokenizer with exactly the vocabulary size
the architecture expects, so that the real model can be built and exercised
with random weights. It is *not* the real vocabulary — audio made with it from
real weights would be gibberish — and everything built with it says so.
"""

from __future__ import annotations

import itertools
import string
from pathlib import Path

STAND_IN_NOTE = "offline stand-in tokenizer built by zoo (NOT the real PocketTTS vocabulary)"
_SPACE = "\u2581"  # SentencePiece's word-boundary marker


def stand_in_pieces(size: int) -> list[tuple[str, float]]:
    """``size`` (piece, log-probability) pairs; longer pieces score higher so they win."""
    pieces: list[str] = ["<unk>", _SPACE]
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces += list(chars)
    pieces += [_SPACE + c for c in chars]
    lower = string.ascii_lowercase
    for n in (2, 3):
        for combo in itertools.product(lower, repeat=n):
            pieces.append("".join(combo))
            pieces.append(_SPACE + "".join(combo))
            if len(pieces) >= size:
                break
        if len(pieces) >= size:
            break
    pieces = list(dict.fromkeys(pieces))[:size]
    if len(pieces) < size:
        raise ValueError(f"cannot build a stand-in vocabulary of {size} pieces")
    return [(p, 0.0 if i == 0 else -10.0 + len(p.lstrip(_SPACE)) * 2.0) for i, p in enumerate(pieces)]


def build_stand_in_tokenizer(size: int, path: str | Path) -> Path:
    """Write a tokenizers JSON file with exactly ``size`` pieces to ``path``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.Unigram(stand_in_pieces(size), unk_id=0, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always")
    if tokenizer.get_vocab_size() != size:
        raise AssertionError(f"stand-in tokenizer has {tokenizer.get_vocab_size()} pieces, expected {size}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path
