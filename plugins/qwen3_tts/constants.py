"""export_constants: the mel filterbank (safetensors) and the run config (JSON): the run loop reads
nothing else, and imports neither torch nor librosa."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import HOP, LOG_FLOOR, MAGNITUDE_EPS, N_FFT, SAMPLE_RATE, WINDOW
from .options import MIN_SECONDS, RunConfig, SpeakerOptions
from .traceables import bucket_frames


def export(reference: Any, options: SpeakerOptions, precision: str, out_dir: Path) -> dict[str, Path]:
    from safetensors.numpy import save_file

    from .frontend import mel_basis

    basis = out_dir / "mel_basis.safetensors"
    save_file({"basis": mel_basis()}, str(basis))
    buckets = tuple(sorted(options.buckets))
    config = RunConfig(
        sample_rate=SAMPLE_RATE,
        n_fft=N_FFT,
        hop=HOP,
        window=WINDOW,
        log_floor=LOG_FLOOR,
        magnitude_eps=MAGNITUDE_EPS,
        buckets=buckets,
        bucket_frames=tuple(bucket_frames(s) for s in buckets),
        enc_dim=int(reference.config["enc_dim"]),
        min_seconds=MIN_SECONDS,
    )
    return {"mel_basis": basis, "config": config.save(out_dir / "config.json")}
