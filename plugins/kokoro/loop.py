"""run_loop for Kokoro-82M (work in progress): numpy orchestration over the components.

phonemes (G2P, or given) -> token ids in the smallest bucket that fits -> ``predictor``
-> durations rounded on the host (at least one frame per token) -> features
expanded along the frames (the alignment, as upstream's one-hot matmul, done as
an exact gather) -> ``decoder`` with the harmonic source's noise as input -> audio.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

MAX_PHONEMES = 510


def phonemize(text: str, g2p: Callable[[str], Any] | None = None) -> str:
    """English phonemes: misaki's full G2P when it works, else its espeak-ng G2P (offline)."""
    if g2p is None:
        g2p = english_g2p()
    result = g2p(text)
    return result[0] if isinstance(result, tuple) else result


def english_g2p() -> Callable[[str], Any]:
    try:
        from misaki import en, espeak

        return en.G2P(trf=False, british=False, fallback=espeak.EspeakFallback(british=False))
    except Exception:  # noqa: BLE001 - misaki's full G2P needs a spaCy model it downloads at run time
        from misaki import espeak

        return espeak.EspeakG2P(language="en-us")


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


def synthesize(
    runtime: Any,
    phonemes: str,
    vocab: dict[str, int],
    voice_pack: Any,
    buckets: list[int],
    speed: float = 1.0,
    noise: Callable[[tuple[int, ...]], Any] | None = None,
) -> tuple[Any, Any]:
    """One utterance: audio [samples] and the per-token frame counts."""
    ids = tokens(phonemes, vocab)
    bucket = pick_bucket(len(ids), buckets)
    padded = np.zeros((1, bucket), np.int32)
    padded[0, : len(ids)] = ids
    style = np.asarray(voice_pack[len(phonemes) - 1], dtype=np.float32).reshape(1, -1)
    out = runtime(
        "predictor",
        {"input_ids": padded, "valid": np.array([len(ids)], np.int32), "style": style, "speed": np.array([speed], np.float32)},
        f"tokens{bucket}" if len(buckets) > 1 else "main",
    )
    frames = durations(out["duration"], len(ids))
    order = np.repeat(np.arange(len(ids)), frames)
    en = np.ascontiguousarray(np.asarray(out["d"], np.float32)[0, order].T[None])  # [1, C, F]
    asr = np.ascontiguousarray(np.asarray(out["t_en"], np.float32)[0][:, order][None])  # [1, 512, F]
    shape = (1, 600 * len(order), 9)
    source_noise = noise(shape) if noise is not None else np.zeros(shape, np.float32)
    audio = runtime("decoder", {"en": en, "asr": asr, "style": style, "noise": source_noise})["audio"]
    return np.asarray(audio, np.float32).reshape(-1), frames
