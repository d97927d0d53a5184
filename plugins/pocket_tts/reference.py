"""load_reference: the upstream PocketTTS model (pocket-tts 4.0.1) and its voices.

Weights come from the hub at the revision pinned in the package's bundled
config, from a local directory laid out like the hub repositories, or — with no
network at all — from the real architecture of the bundled config filled with
seeded random weights, a stand-in tokenizer and a seeded random voice prompt.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core import Reference, WeightsSource
from ...core.kit.files import file_sha256
from ...core.kit.weights import hub_file, load_safetensors
from .options import PocketOptions
from .tokenizer import STAND_IN_NOTE, build_stand_in, open_tokenizer

LANGUAGE = "english"
HUB_REPO = "kyutai/pocket-tts"


def _parse_hf(url: str) -> tuple[str, str, str | None]:
    """``hf://owner/repo/path/in/repo@revision`` -> (repo, path, revision)."""
    body = url.removeprefix("hf://")
    body, _, revision = body.partition("@")
    parts = body.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:]), revision or None


def import_upstream() -> None:
    """Import upstream pocket_tts leaving torch's thread count as it was. Its ``models/tts_model.py``
    calls ``torch.set_num_threads(1)`` when imported, for the whole process: every later torch call
    ran on one thread, another model's in the same process too (kokoro's decoder call took 0.74 s
    instead of 0.41 s on 2 cores in bench_cost, 2026-12-04), and zoo's own pocket_tts export 53.1 s
    instead of 47.7 s. zoo, imported as a library, changes no process-wide setting; nor through
    the upstream it imports. Every function here importing pocket_tts runs after this one (the
    loaders call it first)."""
    import sys

    if "pocket_tts" in sys.modules:
        return
    import torch

    threads = torch.get_num_threads()
    try:
        import pocket_tts  # noqa: F401  (the package imports tts_model)
    finally:
        torch.set_num_threads(threads)


def bundled_config(checkpoint: str = LANGUAGE, size: str = "full") -> Any:
    """The package's config of ``checkpoint``; ``size="small"`` shrinks every width and depth for fast tests.

    The reduced size keeps what the port depends on: latent size 32, the 4000-piece
    vocabulary, 1920 samples per frame (SEANet ratios 6·5·4 and the 16x upsampling),
    the Mimi decoder's context (250 steps; 50 in the small family's separate decoder),
    the flow head, and the small family's grouped-query heads, low rank and z projection.
    """
    import_upstream()
    from pocket_tts.utils.config import CONFIGS_DIR, load_config

    path = CONFIGS_DIR / f"{checkpoint}.yaml"
    if not path.is_file():
        raise ValueError(f"pocket-tts has no config {checkpoint!r} in {CONFIGS_DIR}")
    config = load_config(path)
    if size == "small":
        config = config.model_copy(deep=True)
        t = config.flow_lm.transformer
        m = config.mimi
        m.seanet.dimension, m.seanet.n_filters = 64, 8
        m.transformer.d_model, m.transformer.num_heads, m.transformer.num_layers = 64, 4, 1
        m.transformer.dim_feedforward, m.transformer.input_dimension = 128, 64
        m.transformer.output_dimensions = (64,)
        config.flow_lm.flow.dim, config.flow_lm.flow.depth = 64, 2
        if m.decoder_seanet is None:
            # depth in proportion (6 -> 2, 24 -> 8): a deep checkpoint stays deeper in tests
            t.d_model, t.num_heads, t.num_layers, t.hidden_scale = 128, 4, max(1, t.num_layers // 3), 2
            config.flow_lm.lookup_table.dim = 128
            m.quantizer.output_dimension, m.outer_dim = 64, 64
        else:
            # the small architecture is small already: keep what the port depends on (grouped-query
            # heads, attn_dim, the low rank, z_dim, the separate decoder and its 50-step context),
            # only fewer and narrower layers
            t.num_layers = max(2, t.num_layers // 4)
            if t.d_model > 256:
                t.d_model = config.flow_lm.lookup_table.dim = 128
            d = m.decoder_transformer
            d.num_layers = max(2, d.num_layers // 4)
    elif size != "full":
        raise ValueError(f"unknown architecture size {size!r}")
    return config


def hub_files(config: Any) -> dict[str, tuple[str, str, str | None]]:
    """Where the released weights, tokenizer and voices live, as pinned by the config."""
    return {
        "weights": _parse_hf(config.weights_path),
        "weights_without_voice_cloning": _parse_hf(config.weights_path_without_voice_cloning),
        "tokenizer": _parse_hf(config.flow_lm.lookup_table.tokenizer_path),
    }


@dataclass
class PocketReference:
    """The upstream TTSModel plus what the export needs next to it."""

    tts: Any  # pocket_tts.TTSModel
    tokenizer_path: Path
    tokenizer_is_real: bool
    voices: dict[str, Any] = field(default_factory=dict)  # name -> upstream model_state after the voice prompt
    voice_prompts: dict[str, Any] = field(default_factory=dict)  # name -> conditioning [1, T, d_model]
    workdir: Any = None  # keeps a temporary directory alive


def _build(config: Any, tokenizer_path: Path, seed: int | None) -> Any:
    import_upstream()
    import torch
    from pocket_tts.models.mimi import build_mimi
    from pocket_tts.models.tts_model import TTSModel, stamp_state_names

    config = config.model_copy(deep=True)
    config.flow_lm.lookup_table.tokenizer_path = str(tokenizer_path)
    if seed is not None:
        torch.manual_seed(seed)
    tts = TTSModel._from_pydantic_config(
        config,
        temp=config.default_temperature,
        sampler_decode_steps=1,
        noise_clamp=None,
        eos_threshold=config.default_eos_threshold,
        origin=None,
    )
    tts.flow_lm.speaker_proj_weight = torch.nn.Parameter(
        torch.zeros((config.flow_lm.transformer.d_model, config.mimi.inner_dim or config.mimi.seanet.dimension))
    )
    tts.mimi = build_mimi(config.mimi)
    stamp_state_names(tts)
    return tts.eval()


def random_seed(seed: int, checkpoint: str) -> int:
    """The seed of a checkpoint's random weights: ``seed`` for the default checkpoint, mixed with
    the name for the others, so that two checkpoints never share random weights (as their
    released weights differ) and a shared component would show."""
    import zlib

    return seed if checkpoint == LANGUAGE else (seed + zlib.crc32(checkpoint.encode())) % 2**31


def randomise(tts: Any, seed: int) -> None:
    """Seeded random weights everywhere, including what upstream leaves degenerate.

    Default initialisation leaves the latent statistics at mean 0 / std 1 and the
    voice projection at zero, which would make bugs in denormalisation or voice
    conditioning invisible; they get random values too.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tts.named_parameters():
            if name.endswith("alpha") or "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif "norm" in name and name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("layer_scale_1.scale") or name.endswith("layer_scale_2.scale"):
                p.copy_(0.01 + 0.05 * torch.rand(p.shape, generator=gen))
            else:
                fan_in = p.shape[1] * (p[0, 0].numel() if p.dim() > 2 else 1) if p.dim() >= 2 else max(p.shape[0], 1)
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
        flow = tts.flow_lm
        flow.emb_mean.copy_(0.5 * torch.randn(flow.emb_mean.shape, generator=gen))
        flow.emb_std.copy_(0.5 + torch.rand(flow.emb_std.shape, generator=gen))
        flow.bos_emb.copy_(torch.randn(flow.bos_emb.shape, generator=gen))
        flow.speaker_proj_weight.copy_(
            torch.randn(flow.speaker_proj_weight.shape, generator=gen) / flow.speaker_proj_weight.shape[1] ** 0.5
        )


def random_voice_audio(seed: int, seconds: float = 2.0, sample_rate: int = 24000) -> Any:
    """A seeded random voice prompt: a few harmonic 'syllables' with noise, then a pause."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 110 + 90 * rng.random()
    envelope = np.clip(np.sin(np.pi * t * (2 + 3 * rng.random())), 0, None) ** 2
    wav = sum(np.sin(2 * np.pi * f0 * k * t + rng.random() * 6.28) / k for k in range(1, 6)) * envelope
    wav = 0.3 * wav / np.abs(wav).max() + 0.01 * rng.standard_normal(n)
    return wav.astype(np.float32)[None, :]


def encode_voice(tts: Any, audio: Any) -> Any:
    """Upstream's voice conditioning for an audio prompt [1, samples] at 24 kHz: [1, T, d_model]."""
    import torch
    from pocket_tts.data.audio_utils import end_on_pause

    with torch.no_grad():
        wav = end_on_pause(torch.as_tensor(audio, dtype=torch.float32), tts.config.mimi.sample_rate)
        prompt = tts._encode_audio(wav.unsqueeze(0))
        if tts.flow_lm.insert_bos_before_voice:
            prompt = torch.cat([tts.flow_lm.bos_before_voice, prompt], dim=1)
    return prompt


def prefill_voice(tts: Any, prompt: Any) -> Any:
    """Upstream's model state after the voice prompt (what get_state_for_audio_prompt returns)."""
    import torch
    from pocket_tts.modules.stateful_module import init_states

    with torch.no_grad():
        state = init_states(tts.flow_lm, batch_size=1, sequence_length=prompt.shape[1])
        tts._run_flow_lm_and_increment_step(model_state=state, audio_conditioning=prompt)
    return state


def load(weights: WeightsSource, options: PocketOptions, voices: list[str] | None = None) -> Reference:
    import torch

    size, voice_seconds, checkpoint = options.size, options.voice_seconds, options.checkpoint
    if size != "full" and weights.kind != "random":
        raise ValueError(f"the {size!r} architecture only exists with --random-weights")
    config = bundled_config(checkpoint, size=size)
    files: dict[str, str] = {}
    info: dict[str, Any] = {"checkpoint": checkpoint}
    if weights.kind == "random":
        tmp = tempfile.TemporaryDirectory(prefix="zoo-pocket-")
        table = config.flow_lm.lookup_table
        tokenizer = build_stand_in(table.tokenizer, table.n_bins, tmp.name, table.tokenizer_path)
        seed = random_seed(weights.seed or 0, checkpoint)
        tts = _build(config, tokenizer, seed=seed)
        randomise(tts, seed)
        ref = PocketReference(tts, tokenizer, tokenizer_is_real=False, workdir=tmp)
        prompt = encode_voice(tts, random_voice_audio(weights.seed or 0, voice_seconds))
        ref.voice_prompts["random"] = prompt
        ref.voices["random"] = prefill_voice(tts, prompt)
        info["tokenizer"] = STAND_IN_NOTE
    else:
        if weights.kind == "local":
            root = Path(weights.path)
            weights_file, tokenizer, voice_dir = _local_layout(root, config)
        else:
            weights_file, tokenizer, voice_dir = _download(config, checkpoint)
        open_tokenizer(tokenizer)  # a clear message for a damaged file
        tts = _build(config, tokenizer, seed=None)
        state = load_safetensors(weights_file, what="pocket-tts weights")
        missing, unexpected = tts.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("flow_lm.speaker_proj")]:
            raise ValueError(
                f"{weights_file} does not match the {checkpoint} architecture: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}"
            )
        files[weights_file.name] = file_sha256(weights_file)
        files[tokenizer.name] = file_sha256(tokenizer)
        ref = PocketReference(tts, tokenizer, tokenizer_is_real=True)
        from pocket_tts.models.model_state import _import_model_state

        for voice_file in sorted(voice_dir.glob("*.safetensors")) if voice_dir and voice_dir.is_dir() else []:
            if voices and voice_file.stem not in voices:
                continue
            load_safetensors(voice_file, what="pocket-tts voice")  # names a damaged voice file
            ref.voices[voice_file.stem] = _import_model_state(voice_file, torch.device("cpu"))
            files[f"voices/{voice_file.name}"] = file_sha256(voice_file)
        info["tokenizer"] = "real"
    info["params"] = sum(p.numel() for p in ref.tts.parameters())
    return Reference(ref, files=files, info=info)


def _local_layout(root: Path, config: Any) -> tuple[Path, Path, Path | None]:
    """A directory laid out like the hub repositories (or a single weights file)."""
    _, weights_path, _ = _parse_hf(config.weights_path)
    _, tokenizer_path, _ = _parse_hf(config.flow_lm.lookup_table.tokenizer_path)
    if root.is_file():
        weights_file, base = root, root.parent
    else:
        weights_file, base = root / weights_path, root
        if not weights_file.exists():
            weights_file = root / Path(weights_path).name
    name = Path(tokenizer_path).name  # tokenizer.json, or tokenizer.model for the small family
    tokenizer = next((p for p in (base / tokenizer_path, weights_file.parent / name, base / name) if p.exists()), None)
    if not weights_file.exists():
        raise FileNotFoundError(f"no {weights_path} under {root}")
    if tokenizer is None:
        raise FileNotFoundError(f"no tokenizer under {root}: expected {tokenizer_path} or {name} next to the weights")
    voice_dir = weights_file.parent / "embeddings"
    return weights_file, tokenizer, voice_dir if voice_dir.is_dir() else None


def _download(config: Any, checkpoint: str) -> tuple[Path, Path, Path]:
    from pocket_tts.utils.utils import _ORIGINS_OF_PREDEFINED_VOICES, get_predefined_voice

    locations = hub_files(config)
    repo, path, revision = locations["weights"]
    weights_file = hub_file(repo, path, revision)
    repo, path, revision = locations["tokenizer"]
    tokenizer = hub_file(repo, path, revision)
    voice_dir = None
    for name in _ORIGINS_OF_PREDEFINED_VOICES:
        repo, path, revision = _parse_hf(get_predefined_voice(checkpoint, name))  # upstream: the config's stem
        voice_dir = hub_file(repo, path, revision).parent
    return weights_file, tokenizer, voice_dir


# ---------------------------------------------------------------------------------------------
# Upstream computations on explicit tensors, the ``reference`` side of each component's parity.
# Each rebuilds the upstream streaming state from the component's explicit inputs, runs the
# upstream modules, and maps the upstream state back to the component's layout.


def _flow_state(tts: Any, kv: Any, pos: int, length: int) -> Any:
    import torch
    from pocket_tts.modules.stateful_module import init_states

    state = init_states(tts.flow_lm, batch_size=1, sequence_length=length)
    layers = [name for name in state]  # transformer.layers.<i>.self_attn, in order
    heads = tts.flow_lm.transformer.layers[0].self_attn.num_kv_heads  # the cache holds the key/value heads
    kv = torch.as_tensor(kv)
    for i, name in enumerate(layers):
        cache = state[name]["cache"]
        d = cache.shape[-1]
        cache[:, 0, :pos] = kv[i, :, :pos].reshape(2, pos, heads, d)
        state[name]["offset"][:] = pos
    return state, layers


def _rows_from_state(kv: Any, state: Any, layers: list[str], start: int, count: int, width: int) -> Any:
    """The cache entries upstream wrote at start..start+count, as rows [layers, 2, width, HD] (zeros after count)."""
    import numpy as np

    dtype = state[layers[0]]["cache"].numpy().dtype  # float64 in the float64 parity check
    out = np.zeros((len(layers), 2, width, np.shape(kv)[-1]), dtype=dtype)
    for i, name in enumerate(layers):
        cache = state[name]["cache"][:, 0, start : start + count]  # [2, n, H, D]
        out[i, :, :count] = cache.reshape(2, count, -1).numpy()
    return out


def text_table(tts: Any) -> Any:
    """Upstream's conditioner output for every token id [n_bins + 1, d]: the embedding, or the rank-r
    embedding times its projection (the small family); what the export stores and loop parity checks."""
    import torch

    conditioner = tts.flow_lm.conditioner
    with torch.no_grad():
        return conditioner(torch.arange(conditioner.embed.num_embeddings))


def upstream_prefill(tts: Any, cond: Any, kv: Any, pos: Any, valid: Any) -> dict[str, Any]:
    import numpy as np
    import torch

    p, n = int(pos[0]), int(valid[0])
    state, layers = _flow_state(tts, kv, p, p + n)
    empty_tokens = torch.zeros((1, 0), dtype=torch.int64)
    empty_latents = torch.empty((1, 0, tts.flow_lm.ldim))
    with torch.no_grad():
        tts._run_flow_lm(
            model_state=state,
            text_tokens=empty_tokens,
            backbone_input_latents=empty_latents,
            audio_conditioning=torch.as_tensor(cond)[:, :n],
        )
    return {"kv_new": _rows_from_state(kv, state, layers, p, n, np.shape(cond)[1])}


def upstream_step(tts: Any, decode_steps: int, latent: Any, noise: Any, kv: Any, pos: Any) -> dict[str, Any]:
    from functools import partial

    import torch
    from pocket_tts.models.flow_lm import drifting_decode, lsd_decode, pointwise_decode

    p = int(pos[0])
    state, layers = _flow_state(tts, kv, p, p + 1)
    flow = tts.flow_lm
    with torch.no_grad():
        sequence = torch.as_tensor(latent).view(1, 1, -1)
        hidden = flow.backbone(flow.input_linear(sequence), torch.empty((1, 0, flow.dim)), sequence, model_state=state)
        hidden = hidden.to(torch.float32)[:, -1]
        eos = flow.out_eos(hidden)
        decode = {"drifting": drifting_decode, "pointwise": pointwise_decode}.get(flow.flow_type, lsd_decode)
        latent_out = decode(partial(flow.flow_net, hidden), torch.as_tensor(noise), decode_steps)
    return {
        "latent_out": latent_out.numpy(),
        "eos_logit": eos.numpy(),
        "kv_new": _rows_from_state(kv, state, layers, p, 1, 1),
    }


def upstream_mimi(tts: Any, names: list[str], quantized: Any, pos: Any, states: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch
    from pocket_tts.modules.conv import StreamingConv1d, StreamingConvTranspose1d
    from pocket_tts.modules.stateful_module import init_states

    mimi = tts.mimi
    p = int(pos[0])
    steps = mimi.upsample.convtr.convtr.stride[0] * int(quantized.shape[-1])
    state = init_states(mimi, batch_size=1, sequence_length=p + steps)
    for name, module in mimi.decoder.named_modules():
        key = "decoder." + name
        if isinstance(module, StreamingConv1d) and ("conv_" + name.replace(".", "_")) in states:
            state[key]["previous"][:] = torch.as_tensor(states["conv_" + name.replace(".", "_")])
        elif isinstance(module, StreamingConvTranspose1d):
            state[key]["partial"][:] = torch.as_tensor(states["convtr_" + name.replace(".", "_")])
    state["upsample.convtr"]["partial"][:] = torch.as_tensor(states["upsample"])
    attn_names = [n for n in state if n.startswith("decoder_transformer.")]
    width = mimi.decoder_transformer.transformer.layers[0].self_attn.context  # the window our state keeps
    for i, name in enumerate(attn_names):
        cache = state[name]["cache"]
        cache[:, 0, :p] = 0.0
        lo = max(0, p - width)
        for kind, slot in ((0, "k"), (1, "v")):
            window = torch.as_tensor(states[f"attn{i}_{slot}"])[0].transpose(0, 1)  # [W, H, D]
            cache[kind, 0, lo:p] = window[width - (p - lo) :]
        state[name]["offset"][:] = p
    with torch.no_grad():
        x = mimi._to_encoder_framerate(torch.as_tensor(quantized), state)
        (x,) = mimi.decoder_transformer(x, state)
        audio = mimi.decoder(x, state)
    out = {"audio": audio.numpy()}
    for name, module in mimi.decoder.named_modules():
        if isinstance(module, StreamingConv1d) and ("conv_" + name.replace(".", "_")) in states:
            out["new_conv_" + name.replace(".", "_")] = state["decoder." + name]["previous"].numpy().copy()
        elif isinstance(module, StreamingConvTranspose1d):
            out["new_convtr_" + name.replace(".", "_")] = state["decoder." + name]["partial"].numpy().copy()
    out["new_upsample"] = state["upsample.convtr"]["partial"].numpy().copy()
    for i, name in enumerate(attn_names):
        for kind, slot in ((0, "k"), (1, "v")):
            old = np.asarray(states[f"attn{i}_{slot}"])
            new = np.empty_like(old)
            for j in range(width):
                position = p + steps - width + j
                if position < 0:
                    new[0, :, j] = old[0, :, j + steps]
                else:
                    new[0, :, j] = state[name]["cache"][kind, 0, position].numpy()
            out[f"new_attn{i}_{slot}"] = new
    return {k: out[k] for k in ["audio"] + ["new_" + n for n in names]}


def upstream_clone_state(tts: Any, wav_path: Any) -> Any:
    """Upstream's voice state for a WAV prompt (what get_state_for_audio_prompt(path) computes)."""
    return tts.get_state_for_audio_prompt(Path(wav_path))
