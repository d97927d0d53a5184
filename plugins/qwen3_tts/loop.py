"""run_loop: a voice recording -> its speaker embedding [enc_dim], through the encoder's buckets.

A recording up to the longest bucket (12 s) is embedded in one call, exactly as upstream's
``extract_speaker_embedding`` embeds it (the clip padded to the shortest bucket that holds it; the
padding masked). Upstream embeds a reference of any length in one pass; the packages have fixed
buckets, so a longer recording is cut into windows of the longest bucket, each embedded alone, and
their embeddings averaged, weighted by their frames (a last window under ``min_seconds`` is left
out). The WAV is read one window at a time: memory is bounded by the window, not the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core import RunOptions, RunResult, UsageError
from ...core.kit.audio import iter_wav, resample, wav_seconds
from .frontend import log_mel
from .options import RunConfig
from .traceables import padded

#: a window whose loudest sample is below this (10 steps of 16-bit PCM, -70 dBFS) holds no voice
SILENCE_PEAK = 10 / 32768


def _embed(runtime: Any, cfg: RunConfig, basis: Any, audio: Any) -> tuple[Any, int, int]:
    """One window of 24 kHz audio -> (embedding [enc_dim] float32, its frames, the bucket used)."""
    # a window is the longest bucket's length; a resampler may round it a sample up
    mels = log_mel(audio, basis, cfg.n_fft, cfg.hop, cfg.log_floor, cfg.magnitude_eps)[: cfg.bucket_frames[-1]]
    index = next(i for i, n in enumerate(cfg.bucket_frames) if n >= mels.shape[0])
    seconds, length = cfg.buckets[index], cfg.bucket_frames[index]
    dtype = runtime.input_dtype("encoder", "mels", f"s{seconds}")
    inputs, valid = padded(mels.astype(dtype), length)
    out = runtime("encoder", {"mels": inputs, "valid": valid}, function=f"s{seconds}")
    return np.asarray(out["embedding"], np.float64).reshape(-1), mels.shape[0], seconds


def run(runtime: Any, text: str, options: RunOptions) -> RunResult:
    from safetensors.numpy import load_file

    if not options.voice:
        raise UsageError("qwen3_speaker embeds a voice recording: give it with --voice FILE.wav")
    cfg = RunConfig.load(runtime.constants["config"])
    basis = load_file(str(runtime.constants["mel_basis"]))["basis"]
    total, rate = wav_seconds(options.voice, "--voice")
    if total < cfg.min_seconds:
        raise UsageError(
            f"--voice {options.voice} holds {total:.2f} s of audio: a speaker embedding needs at least "
            f"{cfg.min_seconds:g} s (upstream's voice clone asks for about 3 s)"
        )
    window = float(max(cfg.buckets))
    embeddings, weights, used, notes = [], [], [], []
    done = 0.0
    for block, _ in iter_wav(options.voice, window, "--voice"):
        seconds = block.size / rate
        done += seconds
        options.emit_progress(done, total)
        if seconds < cfg.min_seconds:
            notes.append(f"the last {seconds:.2f} s (under {cfg.min_seconds:g} s) were left out")
            continue
        if float(np.abs(block).max()) < SILENCE_PEAK:
            notes.append(f"a silent window ({seconds:.1f} s from {done - seconds:.1f} s) was left out")
            continue
        audio = resample(block, rate, cfg.sample_rate)
        embedding, count, bucket = _embed(runtime, cfg, basis, audio)
        embeddings.append(embedding)
        weights.append(count)
        used.append(bucket)
    if not embeddings:
        raise UsageError(f"--voice {options.voice} is silent (no sample above -70 dBFS): there is no voice to embed")
    if rate != cfg.sample_rate:
        notes.insert(0, f"resampled from {rate} Hz to {cfg.sample_rate} Hz (the encoder's rate)")
    vector = np.average(np.stack(embeddings), axis=0, weights=np.asarray(weights, np.float64))
    info = {
        "input_seconds": round(total, 3),
        "input_rate": rate,
        "windows": len(embeddings),
        "buckets": used,
        **({"notes": notes} if notes else {}),
    }
    return RunResult.of_values(vector.astype(np.float32), int(sum(weights)), cfg.sample_rate, info)
