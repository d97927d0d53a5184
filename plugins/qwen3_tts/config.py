"""Qwen3-TTS's speaker encoder as released: where its weights live, its hyper-parameters, its front end.

Facts read from ``qwen-tts`` 0.1.1 (``qwen_tts/core/models``): the base checkpoints hold the encoder as
the tensors ``speaker_encoder.*`` of ``model.safetensors``, configured by ``speaker_encoder_config`` of
``config.json`` (present when ``tts_model_type`` is ``base``). ``extract_speaker_embedding`` takes 24 kHz
audio only and computes a 128-bin log-mel spectrogram (n_fft 1024, hop 256, window 1024, 0-12 kHz,
slaney-normalised filterbank, the signal reflect-padded by (n_fft - hop) / 2 on each side, no centring).
"""

from __future__ import annotations

from typing import Any

#: the base checkpoints (the ones with a speaker encoder), each at the revision other ports pin (not
#: checked here: no hub access) and the width of its embedding (the talker's hidden size it feeds)
CHECKPOINTS = {
    "0.6b-base": ("Qwen/Qwen3-TTS-12Hz-0.6B-Base", "5d83992436eae1d760afd27aff78a71d676296fc", 1024),
    "1.7b-base": ("Qwen/Qwen3-TTS-12Hz-1.7B-Base", "fd4b254389122332181a7c3db7f27e918eec64e3", 2048),
}
DEFAULT_CHECKPOINT = "0.6b-base"
#: the tensors of the encoder inside a base checkpoint
TENSOR_PREFIX = "speaker_encoder."
#: the hub files the encoder needs (the speech tokenizer and the talker's tokenizer are not read)
HUB_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")

#: upstream's front end (``extract_speaker_embedding``)
SAMPLE_RATE = 24000
N_FFT = 1024
HOP = 256
WINDOW = 1024
MELS = 128
FMIN = 0
FMAX = 12000
#: the floor of the mel energies before the log (``dynamic_range_compression_torch``)
LOG_FLOOR = 1e-5
#: added to re² + im² before the square root of the STFT magnitude
MAGNITUDE_EPS = 1e-9


def encoder_config(enc_dim: int) -> dict[str, Any]:
    """``Qwen3TTSSpeakerEncoderConfig``'s values of a released checkpoint (its defaults, but the width)."""
    return {
        "mel_dim": MELS,
        "enc_dim": enc_dim,
        "enc_channels": [512, 512, 512, 512, 1536],
        "enc_kernel_sizes": [5, 3, 3, 3, 1],
        "enc_dilations": [1, 2, 3, 4, 1],
        "enc_attention_channels": 128,
        "enc_res2net_scale": 8,
        "enc_se_channels": 128,
        "sample_rate": SAMPLE_RATE,
    }


def small_config() -> dict[str, Any]:
    """The same architecture, narrower (tests): every kernel, dilation and the Res2Net split kept."""
    return {
        **encoder_config(48),
        "enc_channels": [64, 64, 64, 64, 192],
        "enc_attention_channels": 16,
        "enc_res2net_scale": 8,
        "enc_se_channels": 16,
    }


def frames(samples: int) -> int:
    """Mel frames of ``samples`` of audio: the reflect padding adds n_fft - hop, each frame takes n_fft."""
    return (samples + 2 * ((N_FFT - HOP) // 2) - N_FFT) // HOP + 1
