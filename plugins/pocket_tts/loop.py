"""run_loop: PocketTTS generation over the exported components, with numpy only.

Per text chunk: tokenize, look the tokens up in the embedding table, prefill them
after the voice's cached KV (``flowlm.prefill``, ``chunk`` tokens per call),
then one ``flowlm.step`` and one ``mimi`` call per 80 ms frame until EOS plus
the frames kept after it. Mirrors ``TTSModel.generate_audio`` of pocket-tts
4.0.1: same text rules, same length estimate, EOS ignored for the first frames,
the first 5 ms of every chunk faded in.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...core import RunOptions, RunResult, Runtime, Timing
from ...core.kit.audio import read_wav, resample
from .options import RunConfig, TextRulesRecord
from .text import TextRules, prepare, split


class MimiStream:
    """Decodes latents ``mimi_frames_per_call`` at a time, in order, on a worker thread.

    Generation does not wait for decoding (as upstream's decoder thread) unless it is
    two groups ahead. Each decoded group is handed to ``emit`` in order from the calling
    thread, with the chunk's fade-in applied, so audio is written as it is produced and
    never more than two groups of it wait in memory. A final group that is not full is
    padded with copies of its last latent; the decoder is causal, so the padding only
    produces audio that is dropped.
    """

    def __init__(
        self, runtime: Runtime, cfg: RunConfig, init: dict[str, Any], quant: Any, mean: Any, std: Any, emit: Any = None
    ):
        from concurrent.futures import ThreadPoolExecutor

        self.runtime, self.quant, self.mean, self.std = runtime, quant, mean, std
        self.emit = emit or (lambda audio: None)
        self.fade = np.linspace(0, 1, cfg.fade_in_samples, dtype=np.float32)
        self.handed: list[Any] = []
        self.handed_samples = 0
        self.frames = cfg.mimi_frames_per_call
        self.steps = cfg.mimi_steps_per_frame
        self.samples = cfg.samples_per_frame
        self.stateful = cfg.mimi_stateful
        self.state = {} if self.stateful else {k: v.copy() for k, v in init.items()}
        self.pos = 0
        self.pending: list[Any] = []
        self.futures: list[Any] = []
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mimi")

    def push(self, latent: Any) -> None:
        self.pending.append((self.quant @ (latent.reshape(-1) * self.std + self.mean)).astype(np.float32))
        if len(self.pending) == self.frames:
            self._flush()
            self._hand_over(keep=1)

    def _hand_over(self, keep: int) -> None:
        """Emit decoded groups in order: every finished one, waiting until at most ``keep`` are in flight."""
        while self.futures and (len(self.futures) > keep or self.futures[0].done()):
            audio = self.futures.pop(0).result()
            start = self.handed_samples
            if start < len(self.fade):  # the chunk's fade-in may span several groups
                n = min(len(self.fade) - start, len(audio))
                audio[:n] *= self.fade[start : start + n]
            self.handed_samples += len(audio)
            self.handed.append(audio)
            self.emit(audio)

    def _flush(self) -> None:
        count = len(self.pending)
        group = self.pending + [self.pending[-1]] * (self.frames - count)
        self.pending = []
        self.futures.append(self.pool.submit(self._decode, np.stack(group, axis=-1)[None], count))

    def _decode(self, quantized: Any, count: int) -> Any:
        out = self.runtime("mimi", {"quantized": quantized, "pos": np.array([self.pos], np.int32), **self.state})
        if not self.stateful:
            self.state = {k: np.asarray(out["new_" + k], dtype=np.float32) for k in self.state}
        self.pos += self.steps * self.frames
        return np.asarray(out["audio"], dtype=np.float32).reshape(-1)[: count * self.samples]

    def finish(self) -> Any:
        """Decode what is left, emit it, and return the chunk's whole audio (faded in)."""
        if self.pending:
            self._flush()
        self._hand_over(keep=0)
        return np.concatenate(self.handed) if self.handed else np.zeros(0, np.float32)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class Voice:
    """A voice's prefilled KV cache [layers, 2, length, heads * head_dim]."""

    def __init__(self, kv: Any, length: int):
        self.kv = np.asarray(kv, dtype=np.float32)
        self.length = int(length)

    @classmethod
    def load(cls, path: Path) -> "Voice":
        from ...core.kit.constants import load_constants

        data = load_constants(path)  # an export's voice may be stored as look-up tables
        return cls(data["kv"], int(data["length"][0]))

    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"kv": np.ascontiguousarray(self.kv), "length": np.array([self.length], np.int32)}, str(tmp))
        tmp.replace(path)


def prefill(runtime: Runtime, kv: Any, pos: int, tokens: Any, chunk: int) -> int:
    """Write conditioning rows [n, d] into the cache kv (in place) from ``pos``, ``chunk`` per call.

    Each call gets a zero-padded chunk and its valid length; only the valid rows it
    returns are stored. Returns the position after the last token.
    """
    for start in range(0, len(tokens), chunk):
        rows = tokens[start : start + chunk]
        block = np.zeros((1, chunk, tokens.shape[1]), np.float32)
        block[0, : len(rows)] = rows
        inputs = {"cond": block, "kv": kv, "pos": np.array([pos], np.int32), "valid": np.array([len(rows)], np.int32)}
        new = runtime("flowlm", inputs, "prefill")["kv_new"]
        kv[:, :, pos : pos + len(rows)] = np.asarray(new)[:, :, : len(rows)]
        pos += len(rows)
    return pos


def load_voice(runtime: Runtime, name: str | None, cfg: RunConfig) -> tuple[str, Voice]:
    """A bundled voice by name, or a clone of a WAV file (computed once, then cached)."""
    constants = runtime.constants
    if name and (name.lower().endswith(".wav") or Path(name).is_file()):
        return name, clone_voice(runtime, Path(name), cfg)
    name = name or cfg.default_voice
    if name is None or f"voice_{name}" not in constants:
        known = sorted(k.removeprefix("voice_") for k in constants if k.startswith("voice_"))
        raise ValueError(
            f"unknown voice {name!r}; this export has: {', '.join(known) or '(none)'}; or pass a .wav file to clone"
        )
    return name, Voice.load(constants[f"voice_{name}"])


def end_on_pause(wav: Any, rate: int, pause: float = 0.08, fade: float = 0.02, floor_db: float = 35.0) -> Any:
    """Cut trailing silence, fade out the last ``fade`` seconds and add ``pause`` seconds of silence
    (upstream's rule)."""
    frame = max(1, int(0.02 * rate))
    n = len(wav) // frame
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(np.square(wav[: n * frame].reshape(n, frame)), axis=1))
    db = 20 * np.log10(rms + 1e-12)
    end = (int(np.nonzero(db > db.max() - floor_db)[0][-1]) + 1) * frame
    wav = wav[:end].copy()
    length = min(int(fade * rate), end)
    wav[end - length :] *= np.linspace(1, 0, length, dtype=np.float32)
    return np.concatenate([wav, np.zeros(int(pause * rate), np.float32)])


def clone_voice(runtime: Runtime, path: Path, cfg: RunConfig) -> Voice:
    import hashlib

    from ...core.kit.constants import load_constants
    from ...core.kit.files import plugin_cache_dir

    consts = runtime.constants
    from ...core.kit.files import file_sha256

    if not path.is_file():
        raise ValueError(f"voice prompt {path} does not exist")
    key = hashlib.sha256((file_sha256(path) + runtime.backend + file_sha256(consts["flowlm"])).encode()).hexdigest()[
        :32
    ]
    cached = plugin_cache_dir("pocket_tts") / "voices" / f"{key}.safetensors"
    if cached.exists():
        return Voice.load(cached)
    sr = cfg.sample_rate
    limit = cfg.voice_prompt_samples
    wav, rate = read_wav(path, max_seconds=limit / sr + 0.1, what="voice prompt")  # no more than the prompt can use
    wav = resample(wav, rate, sr)
    wav = end_on_pause(wav[: limit - int(0.08 * sr)], sr)
    audio = np.zeros((1, 1, limit), np.float32)
    audio[0, 0, : len(wav)] = wav
    cond = runtime("voice_encoder", {"audio": audio})["conditioning"].astype(np.float32)
    cond = cond[:, : -(-len(wav) // cfg.samples_per_frame)]
    flow = load_constants(consts["flowlm"])
    if "bos_before_voice" in flow:
        cond = np.concatenate([flow["bos_before_voice"].reshape(1, 1, -1), cond], axis=1)
    layers, width = cfg.kv_layers, cfg.kv_width
    kv = np.zeros((layers, 2, cfg.cache_size, width), np.float32)
    chunk, pos = cfg.chunk, 0
    pos = prefill(runtime, kv, pos, cond[0], chunk)
    voice = Voice(np.asarray(kv)[:, :, :pos], pos)
    voice.save(cached)
    return voice


def voices(constants: Mapping[str, Any]) -> list[str]:
    """The export's voice names (the list_voices hook)."""
    return list(RunConfig.load(constants["config"]).voices)


def run(runtime: Runtime, text: str, options: RunOptions) -> RunResult:
    from safetensors.numpy import load_file

    from ...core.kit.constants import load_constants
    from .tokenizer import open_tokenizer

    settings = options.typed_values()  # --set, typed once by the core (RUN_SETTINGS)
    consts = runtime.constants
    cfg = RunConfig.load(consts["config"])
    temperature = settings.get("temperature", cfg.temperature)
    threshold = settings.get("eos_threshold", cfg.eos_threshold)
    max_tokens = settings.get("max_tokens", cfg.max_tokens_per_chunk)
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    rules_cfg = TextRulesRecord.from_mapping(cfg.text_rules, f"{consts['config']}: text_rules")
    rules = TextRules(
        **{**rules_cfg.as_dict(), "replace_characters": tuple(tuple(p) for p in rules_cfg.replace_characters)}
    )

    tokenizer = open_tokenizer(consts["tokenizer"])
    encode = tokenizer.encode

    flow = load_constants(consts["flowlm"])  # the text table may be stored as look-up tables
    table = flow["text_embedding"].astype(np.float32)
    bos, mean, std, quant = flow["bos"], flow["latent_mean"], flow["latent_std"], flow["quantizer"]
    mimi_init = {k: v.astype(np.float32) for k, v in load_file(str(consts["mimi_init_state"])).items()}
    voice_name, voice = load_voice(runtime, options.voice, cfg)
    cache_size, chunk = cfg.cache_size, cfg.chunk
    kv_dtype = runtime.input_dtype(
        "flowlm", "kv", "step"
    )  # fp16 packages: the cache is kept in fp16, never converted per call
    rng = np.random.default_rng(options.seed)
    noise_std = math.sqrt(temperature)

    pieces, frames, report, written = [], 0, [], 0
    for part in split(text, encode, tokenizer.decode, max_tokens, rules):
        prompt, guess = prepare(part, rules)
        after_eos = settings.get(
            "frames_after_eos", cfg.frames_after_eos if cfg.frames_after_eos is not None else guess + 2
        )
        ids = encode(prompt)
        max_frames = math.ceil((len(ids) / cfg.tokens_per_second + cfg.gen_seconds_padding) * cfg.frame_rate)
        if voice.length + len(ids) + max_frames > cache_size:
            raise ValueError(
                f"chunk {part[:40]!r}… needs {voice.length + len(ids) + max_frames} cache slots (voice {voice.length}, "
                f"text {len(ids)}, up to {max_frames} frames) but the export has {cache_size}; use --set "
                "max_tokens=<smaller>"
            )
        if max_frames * cfg.mimi_steps_per_frame > cfg.mimi_max_positions:
            raise ValueError(
                f"chunk {part[:40]!r}… may need {max_frames * cfg.mimi_steps_per_frame} Mimi positions (up to "
                f"{max_frames} frames) "
                f"but the export has {cfg.mimi_max_positions}; use --set max_tokens=<smaller>"
            )

        kv = np.zeros((voice.kv.shape[0], 2, cache_size, voice.kv.shape[-1]), dtype=kv_dtype)
        kv[:, :, : voice.length] = voice.kv
        pos = voice.length
        embedded = table[ids]
        pos = prefill(runtime, kv, pos, embedded, chunk)

        latent = bos.reshape(1, -1).astype(np.float32)
        if cfg.mimi_stateful:
            runtime.reset_states()  # a fresh decoder state for every text chunk, as upstream
        decoder = MimiStream(runtime, cfg, mimi_init, quant, mean, std, options.emit)
        eos_step, logits, emitted = None, [], 0
        try:
            for index in range(max_frames):
                if eos_step is not None and index >= eos_step + after_eos:
                    break  # decided before stepping: the step that ends generation is never run
                noise = (
                    (rng.standard_normal((1, latent.shape[1])) * noise_std).astype(np.float32)
                    if noise_std > 0
                    else np.zeros_like(latent)
                )
                out = runtime(
                    "flowlm", {"latent": latent, "noise": noise, "kv": kv, "pos": np.array([pos], np.int32)}, "step"
                )
                kv[:, :, pos] = np.asarray(out["kv_new"])[:, :, 0]
                pos += 1
                logits.append(float(np.asarray(out["eos_logit"]).reshape(-1)[0]))
                if logits[-1] > threshold and eos_step is None and index >= cfg.min_frames_before_eos:
                    eos_step = index
                if eos_step is not None and index >= eos_step + after_eos:
                    break
                latent = np.asarray(out["latent_out"], dtype=np.float32).reshape(1, -1)
                decoder.push(latent)
                emitted += 1
            samples = decoder.finish()
        finally:
            decoder.close()
        pieces.append(samples)
        frames += emitted
        if len(samples):  # the chunk's span: pocket_tts predicts no word durations
            options.emit_timings(
                [Timing(part.strip(), written / cfg.sample_rate, (written + len(samples)) / cfg.sample_rate, "piece")]
            )
        written += len(samples)
        report.append(
            {
                "text": prompt.strip(),
                "tokens": len(ids),
                "frames": emitted,
                "eos_frame": eos_step,
                "eos_logits": [round(v, 5) for v in logits],
            }
        )
    info = {"voice": voice_name, "temperature": temperature, "eos_threshold": threshold, "chunks": report}
    if not cfg.tokenizer_is_real:
        info["note"] = "exported with the offline stand-in tokenizer and random weights: not real speech"
    return RunResult(
        audio=np.concatenate(pieces) if pieces else np.zeros(0, np.float32),
        sample_rate=cfg.sample_rate,
        frames=frames,
        info=info,
    )
