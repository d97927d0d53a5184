"""export_constants for VibeVoice: voice presets, the type embedding, the run configuration.

* ``presets.safetensors`` — per voice ``<voice>.lm_k`` / ``lm_v`` ([layers, kv_heads, T, D]),
  ``tts_k`` / ``tts_v``, ``neg_k`` / ``neg_v`` (the negative tts_lm path), and the last hidden
  states ``tts_hidden`` / ``neg_hidden`` [C] the first speech latent is conditioned on; fp16
  (the released presets are bf16, exact in fp16);
* ``embeddings.safetensors`` — ``tts_input_types`` [2, C] (row 1 text, row 0 speech) and
  ``embed_tokens`` [vocab, C], the lm's token table (the lm takes its rows: 136 M of the lm's
  weights, fp16 in fp16 variants; a compressed variant may store it as look-up tables);
* ``config.json`` — windows, chunk sizes and cache capacities, latent geometry, CFG scale,
  the tokenizer kind (a byte stand-in with random weights);
* ``tokenizer.json`` — the Qwen2.5 tokenizer, with the released weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import config as C
from .options import RunConfig, TokenizerInfo, VibeVoiceOptions


def export(model: Any, options: VibeVoiceOptions, precision: str, out_dir: Path) -> dict[str, Path]:
    from safetensors.numpy import save_file

    from .traceables import _bf16, token_table

    tensors: dict[str, np.ndarray] = {}
    for voice, preset in sorted(model.presets.items()):
        p = {part: {k: _bf16(v) for k, v in arrays.items()} for part, arrays in preset.items()}
        tensors.update(
            {
                f"{voice}.lm_k": p["lm"]["k"],
                f"{voice}.lm_v": p["lm"]["v"],
                f"{voice}.tts_k": p["tts_lm"]["k"],
                f"{voice}.tts_v": p["tts_lm"]["v"],
                f"{voice}.neg_k": p["neg_tts_lm"]["k"],
                f"{voice}.neg_v": p["neg_tts_lm"]["v"],
                f"{voice}.tts_hidden": p["tts_lm"]["hidden"][0, -1],
                f"{voice}.neg_hidden": p["neg_tts_lm"]["hidden"][0, -1],
            }
        )
    path = out_dir / "presets.safetensors"
    save_file({k: np.ascontiguousarray(v.astype(np.float16)) for k, v in tensors.items()}, str(path))
    files = {"presets": path}

    path = out_dir / "embeddings.safetensors"
    store = np.float16 if precision == "fp16" else np.float32
    save_file(
        {
            "tts_input_types": model.tts_input_types.weight.detach().numpy().astype(np.float32),
            "embed_tokens": np.ascontiguousarray(token_table(model).astype(store)),
        },
        str(path),
    )
    files["embeddings"] = path

    if model.tokenizer_file is not None:
        import shutil

        path = out_dir / "tokenizer.json"
        shutil.copyfile(model.tokenizer_file, path)
        files["tokenizer"] = path
    cfg = model.cfg["decoder"]
    run_config = RunConfig(
        sample_rate=24000,
        samples_per_latent=C.SAMPLES_PER_LATENT,
        latent=C.LATENT,
        hidden=cfg["hidden_size"],
        text_window=C.TEXT_WINDOW,
        speech_window=C.SPEECH_WINDOW,
        lm_chunk=options.lm_chunk,
        lm_capacity=options.lm_capacity,
        tts_capacity=options.tts_capacity,
        cfg_scale=1.5,
        eos_probability=0.5,
        voices=sorted(model.presets),
        default_voice=sorted(model.presets)[0],
        tokenizer=TokenizerInfo(
            "tokenizer.json" if model.tokenizer_file is not None else "bytes", cfg["vocab_size"]
        ).as_dict(),
        decoder_cache_shapes=[list(shape) for shape in _decoder_cache_shapes(model)],
    )
    files["config"] = run_config.save(out_dir / "config.json")
    return files


def _decoder_cache_shapes(model: Any) -> list[tuple[int, int, int]]:
    from .acoustic import StreamingDecoder

    return StreamingDecoder(model.decoder).cache_shapes()
