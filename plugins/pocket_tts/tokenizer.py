"""PocketTTS's text tokenizers, and an offline stand-in for them.

The real tokenizer is downloaded from the hub with the weights: a SentencePiece
vocabulary saved as tokenizers JSON (``tokenizer.json``, the main checkpoints) or the
SentencePiece model itself (``tokenizer.model``, the small english_2m/7m/18m ones); the
run loop reads either (:func:`open_tokenizer`, by the file's suffix, as upstream's
``build_tokenizer``).

Without network access the plugin builds a stand-in instead: a Unigram tokenizer with
exactly the vocabulary size the architecture expects, in the format the checkpoint's
config names, so that the real model can be built and exercised with random weights.
It is *not* the real vocabulary — audio made with it from real weights would be
gibberish — and everything built with it says so."""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

STAND_IN_NOTE = "offline stand-in tokenizer built by zoo (NOT the real PocketTTS vocabulary)"
_SPACE = "\u2581"  # SentencePiece's word-boundary marker


def stand_in_pieces(size: int) -> list[tuple[str, float]]:
    """``size`` (piece, log-probability) pairs; longer pieces score higher so they win."""
    pieces: list[str] = ["<unk>", _SPACE]
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces += list(chars)
    # word-initial pieces for letters and digits only: a mark after a space is the boundary piece
    # then the mark, as in the real vocabularies (upstream's splitter relies on it: it drops the
    # first id of encode(",;:") as the boundary and keeps the rest as the marks)
    pieces += [_SPACE + c for c in string.ascii_letters + string.digits]
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


def build_stand_in_sentencepiece(size: int, path: str | Path) -> Path:
    """Write a SentencePiece unigram model with the same ``size`` pieces to ``path``.

    Built as a ModelProto (no training: the trainer would need a corpus); identity
    normalisation with a dummy word-boundary prefix, as the tokenizers stand-in.
    """
    from sentencepiece import SentencePieceProcessor
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = pb.ModelProto()
    for i, (piece, score) in enumerate(stand_in_pieces(size)):
        entry = model.pieces.add()
        entry.piece, entry.score = piece, score
        entry.type = pb.ModelProto.SentencePiece.UNKNOWN if i == 0 else pb.ModelProto.SentencePiece.NORMAL
    spec = model.trainer_spec
    spec.model_type, spec.vocab_size = pb.TrainerSpec.UNIGRAM, size
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = 0, -1, -1, -1
    model.normalizer_spec.name = "identity"
    model.normalizer_spec.add_dummy_prefix = True
    model.normalizer_spec.remove_extra_whitespaces = True
    payload = model.SerializeToString()
    if SentencePieceProcessor(model_proto=payload).vocab_size() != size:
        raise AssertionError(f"stand-in SentencePiece model does not have {size} pieces")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def stand_in_file(kind: str, source: str = "") -> str:
    """The stand-in's file name for a config's ``lookup_table`` (``tokenizer`` kind, ``tokenizer_path``):
    tokenizers JSON for kind tokenizers/json or a ``.json`` source, else SentencePiece (upstream's rule)."""
    json = kind in ("tokenizers", "json") or source.split("@")[0].endswith(".json")
    return "tokenizer.json" if json else "tokenizer.model"


def build_stand_in(kind: str, size: int, folder: str | Path, source: str = "") -> Path:
    """The stand-in tokenizer in the format a config names, written into ``folder``."""
    path = Path(folder) / stand_in_file(kind, source)
    return build_stand_in_tokenizer(size, path) if path.suffix == ".json" else build_stand_in_sentencepiece(size, path)


@dataclass(frozen=True)
class TextTokenizer:
    """text -> ids and back, whichever file format the checkpoint ships."""

    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    vocab_size: int


def open_tokenizer(path: str | Path, what: str = "pocket-tts tokenizer") -> TextTokenizer:
    """A ``.model`` file is a SentencePiece model, anything else a tokenizers JSON (upstream's rule).

    A file that neither library can read raises ValueError naming it.
    """
    path = Path(path)
    if path.suffix == ".model":
        from sentencepiece import SentencePieceProcessor

        try:
            sp = SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{what} {path} is not a readable SentencePiece model: {exc}") from None
        return TextTokenizer(
            lambda text: sp.encode(text, out_type=int), lambda ids: sp.decode(list(ids)), sp.vocab_size()
        )
    from ...core.kit.weights import load_tokenizer

    tokenizer = load_tokenizer(path, what)
    return TextTokenizer(
        lambda text: tokenizer.encode(text).ids, lambda ids: tokenizer.decode(list(ids)), tokenizer.get_vocab_size()
    )
