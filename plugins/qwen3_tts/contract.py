"""qwen3_speaker's run loop as data (the loop_contract hook): what a native app implements around the
encoder package. ``loop.py`` is the code it describes; the tests run that loop on a recording runtime
and check its calls against this."""

from __future__ import annotations

from typing import Any, Mapping

from ...core import Call, Feed, FrontEnd, LoopContract, Repeat, Use
from .options import RunConfig
from .traceables import PAD_VALUE


def contract(constants: Mapping[str, Any]) -> LoopContract:
    cfg = RunConfig.load(constants["config"])
    longest = max(cfg.buckets)
    buckets = ", ".join(f"s{s} = {n} frames" for s, n in zip(cfg.buckets, cfg.bucket_frames))
    return LoopContract(
        summary="qwen3_speaker embeds a voice recording: log-mel features of each window of up to "
        f"{longest} s through the encoder, the windows' embeddings averaged by their frames.",
        front_end=FrontEnd(
            "audio",
            f"a mono recording resampled to {cfg.sample_rate} Hz, read {longest} s at a time; each window's log-mel "
            f"spectrogram: reflect-padded by (n_fft - hop) / 2 = {(cfg.n_fft - cfg.hop) // 2}, Hann window of "
            f"{cfg.n_fft}, hop {cfg.hop}, magnitude sqrt(re^2 + im^2 + {cfg.magnitude_eps:g}), mel_basis.safetensors's "
            f"basis, log of max(., {cfg.log_floor:g}); windows under {cfg.min_seconds:g} s or silent (no sample above "
            "-70 dBFS) are left out",
            files=("mel_basis", "config"),
        ),
        steps=(
            Repeat(
                f"window of up to {longest} s",
                (
                    Call(
                        "encoder",
                        functions=tuple(f"s{s}" for s in cfg.buckets),
                        choose=f"the shortest bucket holding the window's frames ({buckets})",
                        feeds=(
                            Feed(
                                "mels", "audio", f"the window's log-mels [1, 128, 1, bucket], padded with {PAD_VALUE:g}"
                            ),
                            Feed("valid", "loop", "how many frames are real"),
                        ),
                        outputs=(Use("embedding", f"the window's embedding [{cfg.enc_dim}], weighted by its frames"),),
                    ),
                ),
                until="the recording ends",
            ),
        ),
        result=f"float32 speaker embedding [{cfg.enc_dim}]: the windows' embeddings averaged, weighted by frames",
    )
