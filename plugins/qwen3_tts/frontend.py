"""The front end in numpy (no torch at run time): 24 kHz audio -> log-mel spectrogram [frames, 128].

The same arithmetic as upstream's ``mel_spectrogram``: reflect padding of (n_fft - hop) / 2 on each
side, frames of n_fft every hop samples (no centring), a periodic Hann window (torch's default),
magnitude sqrt(re² + im² + eps), the slaney-normalised mel filterbank (librosa's, computed at export
time and shipped with the export: the run loop needs no librosa), log of the energies floored.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

#: frames transformed at once (256 frames of 1024 samples: 2 MB of float64 per intermediate)
FRAMES_PER_BLOCK = 256


def hann(length: int) -> Any:
    """The periodic Hann window (``torch.hann_window``'s default): 0.5 - 0.5 cos(2πk / length)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def log_mel(audio: Any, basis: Any, n_fft: int, hop: int, log_floor: float, magnitude_eps: float) -> Any:
    """audio [N] (float, 24 kHz, N > (n_fft - hop) / 2) -> log-mel [frames, mels] float32."""
    pad = (n_fft - hop) // 2
    y = np.pad(np.asarray(audio, np.float64), pad, mode="reflect")
    count = (y.size - n_fft) // hop + 1
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop][:count]  # a view: no copy
    window, weights = hann(n_fft), np.asarray(basis, np.float64).T
    out = np.empty((count, weights.shape[1]), np.float32)
    for start in range(0, count, FRAMES_PER_BLOCK):  # a block of frames at a time: memory stays small
        spectrum = np.fft.rfft(frames[start : start + FRAMES_PER_BLOCK] * window, axis=1)
        magnitude = np.sqrt(spectrum.real**2 + spectrum.imag**2 + magnitude_eps)
        out[start : start + FRAMES_PER_BLOCK] = np.log(np.maximum(magnitude @ weights, log_floor))
    return out


@lru_cache(maxsize=1)
def mel_basis() -> Any:
    """The filterbank upstream builds (``librosa.filters.mel``, slaney scale and norm) [mels, n_fft/2 + 1],
    float32 as upstream keeps it; export time only (librosa is the reference's dependency)."""
    from librosa.filters import mel

    from .config import FMAX, FMIN, MELS, N_FFT, SAMPLE_RATE

    return mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=MELS, fmin=FMIN, fmax=FMAX).astype(np.float32)
