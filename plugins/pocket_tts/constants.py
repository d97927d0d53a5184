"""export_constants: everything the run loop needs besides the packages, as safetensors + JSON.

* ``flowlm.safetensors`` — text embedding table (upstream's conditioner output for every token id:
  the low-rank tables of the small family come out projected), BOS latent, latent mean/std,
  quantizer projection;
* ``mimi_init_state.safetensors`` — the decoder's initial streaming state;
* ``voice_<name>.safetensors`` — each voice's prefilled KV cache (voice first, then the
  utterance's text is prefilled after it) and its length;
* ``tokenizer.json`` or ``tokenizer.model`` (SentencePiece, the small family) — the checkpoint's
  tokenizer as shipped (the offline stand-in with random weights: see config);
* ``config.json`` — the generation parameters and text rules of the upstream config.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .flowlm import voice_cache
from .layers import CachedTransformer, to_numpy
from .mimi import MimiDecoder, initial_mimi_state
from .options import PocketOptions, RunConfig, TextRulesRecord
from .reference import text_table


def export(ref: Any, options: PocketOptions, precision: str, out_dir: Path) -> dict[str, Path]:
    import numpy as np
    from safetensors.numpy import save_file

    tts = ref.tts
    flow = tts.flow_lm
    store = np.float16 if precision == "fp16" else np.float32
    files: dict[str, Path] = {}
    table = text_table(tts)

    path = out_dir / "flowlm.safetensors"
    save_file(
        {
            "text_embedding": to_numpy(table).astype(store),
            "bos": to_numpy(flow.bos_emb),
            "latent_mean": to_numpy(flow.emb_mean),
            "latent_std": to_numpy(flow.emb_std),
            "quantizer": to_numpy(tts.mimi.quantizer.output_proj.weight)[:, :, 0].copy(),
            **(
                {"bos_before_voice": to_numpy(flow.bos_before_voice).reshape(1, -1)}
                if flow.insert_bos_before_voice
                else {}
            ),
        },
        str(path),
    )
    files["flowlm"] = path

    layout = MimiDecoder(tts.mimi, 1).layout
    path = out_dir / "mimi_init_state.safetensors"
    save_file({k: v.astype(store) for k, v in initial_mimi_state(layout).items()}, str(path))
    files["mimi_init_state"] = path

    for name, state in ref.voices.items():
        kv, length = voice_cache(state, options.cache_size)
        path = out_dir / f"voice_{name}.safetensors"
        save_file({"kv": kv[:, :, :length].astype(store).copy(), "length": np.array([length], np.int32)}, str(path))
        files[f"voice_{name}"] = path

    path = out_dir / ("tokenizer.model" if Path(ref.tokenizer_path).suffix == ".model" else "tokenizer.json")
    shutil.copyfile(ref.tokenizer_path, path)
    files["tokenizer"] = path

    config = tts.config
    run_config = RunConfig(
        sample_rate=config.mimi.sample_rate,
        frame_rate=config.mimi.frame_rate,
        samples_per_frame=int(config.mimi.sample_rate / config.mimi.frame_rate),
        mimi_steps_per_frame=MimiDecoder(tts.mimi, 1).steps_per_frame,
        mimi_frames_per_call=options.mimi_frames,
        mimi_stateful=options.stateful_mimi,
        cache_size=options.cache_size,
        kv_layers=len(flow.transformer.layers),
        kv_width=CachedTransformer(flow.transformer, 1).kv_width,
        chunk=options.chunk,
        decode_steps=options.decode_steps,
        mimi_max_positions=options.mimi_max_positions,
        temperature=float(tts.temp),
        eos_threshold=float(tts.eos_threshold),
        frames_after_eos=config.model_recommended_frames_after_eos,
        min_frames_before_eos=tts._MIN_FRAMES_BEFORE_EOS,
        tokens_per_second=float(tts._TOKENS_PER_SECOND_ESTIMATE),
        gen_seconds_padding=float(tts._GEN_SECONDS_PADDING),
        max_tokens_per_chunk=50,
        fade_in_samples=config.mimi.sample_rate // 200,
        voice_prompt_samples=int(options.voice_seconds * config.mimi.sample_rate),
        default_voice="alba" if "alba" in ref.voices else next(iter(ref.voices), None),
        voices=sorted(ref.voices),
        tokenizer_is_real=bool(ref.tokenizer_is_real),
        text_rules=TextRulesRecord(
            pad_with_spaces_for_short_inputs=config.pad_with_spaces_for_short_inputs,
            remove_semicolons=config.remove_semicolons,
            append_terminal_punctuation=config.append_terminal_punctuation,
            capitalize_first_letter=config.capitalize_first_letter,
            replace_characters=[list(p) for p in sorted(config.replace_characters.items())],
        ).as_dict(),
    )
    files["config"] = run_config.save(out_dir / "config.json")
    return files
