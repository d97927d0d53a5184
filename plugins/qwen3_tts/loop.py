"""run_loop: text -> audio over the components (``runtime`` runs the torch traceables, the MIL
interpreter or CoreML: the same loop for every backend)."""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.core import RunOptions, RunResult

from .options import RunConfig


def run(runtime: Any, text: str, options: RunOptions) -> RunResult:
    from safetensors.numpy import load_file

    if options.settings:
        raise ValueError(f"unknown qwen3_speaker run option(s) {sorted(options.settings)}; this model has none")
    cfg = RunConfig.load(runtime.constants["config"])
    table = load_file(str(runtime.constants["embeddings"]))["table"]
    tokens = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    pieces = []
    for start in range(0, len(tokens), cfg.chunk):
        ids = tokens[start : start + cfg.chunk]
        emb = np.zeros((1, cfg.chunk, table.shape[1]), np.float32)
        emb[0, : len(ids)] = table[ids]
        audio = runtime("synth", {"emb": emb})["audio"].reshape(-1)
        pieces.append(audio[: len(ids) * cfg.samples_per_token])  # padded tokens are not spoken
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return RunResult(audio=audio.astype(np.float32), sample_rate=cfg.sample_rate, frames=len(tokens))
