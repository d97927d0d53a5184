"""Metrics: how two outputs are compared (max_abs, rel, cosine, SNR, spectral distance, aligned
spectral distance) and the integer roundings run loops apply. Pure numpy; imports nothing of zoo,
so checks, calibration, compression and evaluation all measure with the same functions."""

from __future__ import annotations

import math
from typing import Any

#: integer outputs are compared after the rounding the run loop applies (ComponentSpec.integer_outputs)
INTEGER_ROUNDINGS = {
    "round": lambda x: _np().round(x),
    "round_min1": lambda x: _np().maximum(_np().round(x), 1),
}


#: a compressed package's integer outputs (kokoro's durations, in frames) may move no more than
#: speaking this much faster or slower moves them: each by at most one, or by what that tempo change
#: moves it if more; in total (Σ|Δ| after rounding) at most what the tempo change moves them all.
#: Flips by one are unavoidable under compression noise (a trained duration a hair from a rounding
#: boundary flips under any perturbation: trained Kokoro-82M, fp16-w8 changed 35 durations and
#: fp16-mixed 19, 14 of those flips by one a hair from a boundary), and what they cost is what a
#: tempo change costs, which kokoro's own ``speed`` setting makes on every duration (speed 1.1
#: divides them all by 1.1). 10%: a change that costs no words — measured, espeak-ng speech of
#: zoo's 21 English prompts 10% faster / slower, Whisper tiny.en: mean WER 0.232 / 0.186 against
#: 0.223 (evaluate.QOI_MIN) — and well inside the speeds a user picks (kokoro's ``speed`` takes
#: 0.1 to 10). The bound is computed from the expected values themselves, so it holds for any
#: weights.
INTEGER_TEMPO = 0.10


def _np() -> Any:
    import numpy

    return numpy


def _magnitudes(x: Any, n_fft: int, hop: int) -> Any:
    """Magnitude spectrogram (Hann window) of a flattened signal: [frames, n_fft // 2 + 1]."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    return np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1))


def _relative(sa: Any, sb: Any) -> float:
    import numpy as np

    norm = float(np.linalg.norm(sb))
    diff = float(np.linalg.norm(sa - sb))
    return diff / norm if norm > 0 else (0.0 if diff == 0 else float("inf"))


def spectral_distance(actual: Any, expected: Any, n_fft: int = 512, hop: int = 128) -> float:
    """||S_a - S_b|| / ||S_b|| over magnitude spectrograms (Hann window) of the flattened signals."""
    return _relative(_magnitudes(actual, n_fft, hop), _magnitudes(expected, n_fft, hop))


def aligned_spectral_distance(
    actual: Any, expected: Any, actual_segments: Any, expected_segments: Any, n_fft: int = 512, hop: int = 128
) -> float:
    """``spectral_distance`` with ``actual``'s spectrogram frames mapped onto ``expected``'s time line
    segment by segment: the same number of segments (frames of each unit, e.g. a token's duration)
    on both sides, each segment's moments mapped linearly onto the other's. Frames are moved, never
    resampled, so a stretched segment keeps its pitch: a one-frame longer token costs that frame's
    difference, not a shift of everything after it."""
    import numpy as np

    a, e = np.asarray(actual_segments, np.float64), np.asarray(expected_segments, np.float64)
    if a.shape != e.shape or a.size == 0 or a.sum() <= 0 or e.sum() <= 0:
        raise ValueError(f"cannot align {a.size} segments with {e.size}")
    sa, se = _magnitudes(actual, n_fft, hop), _magnitudes(expected, n_fft, hop)
    ea = np.concatenate([[0.0], np.cumsum(a)]) * (len(np.ravel(actual)) / a.sum())  # segment edges, in samples
    ee = np.concatenate([[0.0], np.cumsum(e)]) * (len(np.ravel(expected)) / e.sum())
    keep = np.concatenate([[True], np.diff(ee) > 0])  # empty segments on the expected side map nowhere
    centres = np.arange(len(se)) * hop + n_fft / 2
    moments = np.interp(centres, ee[keep], ea[keep])
    index = np.clip(np.round((moments - n_fft / 2) / hop).astype(int), 0, len(sa) - 1)
    return _relative(sa[index], se)


def snr_db(actual: Any, expected: Any, chunk: int = 1 << 20) -> float:
    """10·log10(Σ expected² / Σ (actual − expected)²) in float64, summed ``chunk`` elements at a time
    (the float64 copies are a chunk's, not the tensors': a token table of 136 M values would take
    2.2 GB); inf when equal, -inf with no signal, nan where either side holds a non-finite value."""
    import numpy as np

    a, b = np.asarray(actual).reshape(-1), np.asarray(expected).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {np.shape(actual)} vs {np.shape(expected)}")
    noise = signal = 0.0
    for start in range(0, a.size, chunk):
        x = np.asarray(a[start : start + chunk], np.float64)
        y = np.asarray(b[start : start + chunk], np.float64)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            return float("nan")
        noise += float(np.sum((x - y) ** 2))
        signal += float(np.sum(y**2))
    if noise == 0:
        return float("inf")
    return 10 * math.log10(signal / noise) if signal > 0 else float("-inf")


def compare(actual: Any, expected: Any, spectral: bool = False) -> dict[str, float]:
    """max_abs, rel (max_abs / max |expected|) and cosine of two arrays (and the spectral distance)."""
    import numpy as np

    a = np.asarray(actual, dtype=np.float64).ravel()
    b = np.asarray(expected, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {np.shape(actual)} vs {np.shape(expected)}")
    if a.size == 0:
        return {"max_abs": 0.0, "rel": 0.0, "cosine": 1.0, "snr_db": float("inf")}
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        # a non-finite value on either side is never a match, even the same NaN in the same place:
        # an output that overflowed proves nothing about the port
        worst = {"max_abs": float("inf"), "rel": float("inf"), "cosine": float("nan"), "snr_db": float("nan")}
        return {**worst, "spectral": float("inf")} if spectral else worst
    diff = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 and nb == 0:
        cosine = 1.0
    elif na == 0 or nb == 0:
        cosine = 0.0
    else:
        cosine = float(np.dot(a, b) / (na * nb))
    result = {
        "max_abs": diff,
        "rel": diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")),
        "cosine": cosine,
        "snr_db": snr_db(a, b),
    }
    if spectral:
        result["spectral"] = spectral_distance(a, b)
    return result
