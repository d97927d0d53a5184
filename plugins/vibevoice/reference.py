"""The plugin's reference implementation of VibeVoice-Realtime-0.5B (upstream lives only on GitHub).

Built from library layers with the checkpoint's parameter names mapped onto them, so the
released weights load strictly: transformers' ``Qwen2Model`` for ``model.language_model``
(4 layers, final norm an identity) and ``model.tts_language_model`` (20 layers; its token
embedding is never used — the tts_lm only reads the lm's hidden states and the acoustic
connector's embeddings — and is not built), transformers' VibeVoice diffusion head and
acoustic decoder, and upstream's small modules (type embedding, connector, EOS classifier).
The acoustic *encoder* only serves voice cloning from audio, which the realtime model does
not do (voices come as prefilled presets), so it is not built either.

:func:`generate` is upstream's ``generate`` loop (text windows of 5, 6 speech latents per
window, classifier-free guidance through the negative tts_lm path, EOS classifier) over
these modules, with the diffusion noise supplied by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ...core import Reference, WeightsSource
from . import config as C
from .options import VibeVoiceOptions


@dataclass
class VibeVoice:
    cfg: dict  # decoder (Qwen2) facts plus tts_layers, head and acoustic facts
    lm: Any
    tts_lm: Any
    tts_input_types: Any
    connector: Any
    head: Any
    decoder: Any
    eos: Any
    scaling: float
    bias: float
    presets: dict[str, Any] = field(default_factory=dict)
    tokenizer_file: Any = None  # tokenizer.json of the released weights (None: the loop's byte stand-in)


def sizes(size: str) -> dict:
    if size == "full":
        return {
            "decoder": dict(C.DECODER),
            "tts_layers": C.TTS_LAYERS,
            "head_layers": 4,
            "acoustic": {"filters": 32, "depths": (3, 3, 3, 3, 3, 3, 8)},
        }
    return {
        "decoder": C.small_decoder(),
        "tts_layers": 3,
        "head_layers": 2,
        "acoustic": {"filters": 4, "depths": (1, 1, 1, 1, 1, 1, 2)},
    }


def build(cfg: dict) -> VibeVoice:
    """The modules with uninitialised weights: every one is then written, by :func:`randomise` or by
    the checkpoint's strict load (torch's and transformers' initialisers took 8 of 12 s at full size)."""
    from transformers.initialization import no_init_weights

    with no_init_weights():
        return _build(cfg)


def _build(cfg: dict) -> VibeVoice:
    from torch import nn
    from transformers import Qwen2Model
    from transformers.models.vibevoice.modeling_vibevoice import VibeVoiceDiffusionHead
    from transformers.models.vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer import (
        VibeVoiceAcousticTokenizerDecoderModel,
    )

    from .acoustic import decoder_config
    from .diffusion import SpeechConnector, head_config

    dec = cfg["decoder"]
    hidden = dec["hidden_size"]
    lm_layers = dec["num_hidden_layers"] - cfg["tts_layers"]
    lm = Qwen2Model(C.qwen2_config(dec, lm_layers)).eval()
    lm.norm = nn.Identity()
    tts_lm = Qwen2Model(C.qwen2_config({**dec, "vocab_size": 1}, cfg["tts_layers"])).eval()
    tts_lm.embed_tokens = None  # never read: inputs arrive as embeddings
    eos = nn.Module()  # upstream's tts_eos_classifier: fc1, ReLU, fc2 (see eos_logit)
    eos.fc1 = nn.Linear(hidden, hidden)
    eos.fc2 = nn.Linear(hidden, 1)
    head = VibeVoiceDiffusionHead(head_config(hidden, layers=cfg["head_layers"])).eval()
    decoder = VibeVoiceAcousticTokenizerDecoderModel(decoder_config(C.LATENT, **cfg["acoustic"])).eval()
    model = VibeVoice(
        cfg,
        lm,
        tts_lm,
        nn.Embedding(2, hidden),
        SpeechConnector(C.LATENT, hidden).eval(),
        head,
        decoder,
        eos.eval(),
        float("nan"),
        float("nan"),
    )
    return model


def eos_logit(model: VibeVoice, hidden: Any) -> Any:
    import torch

    return model.eos.fc2(torch.relu(model.eos.fc1(hidden)))


def randomise(model: VibeVoice, seed: int) -> None:
    """Seeded weights that exercise every path: upstream zero-initialises the diffusion head's
    modulation and output layers and leaves the latent scaling factors NaN, and the acoustic
    decoder's layer scales start at 1e-6 — with those the tests would test nothing."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (model.lm, model.tts_lm, model.tts_input_types, model.connector, model.eos):
            for name, p in module.named_parameters():
                if name.endswith("norm.weight") or ".norm." in name and name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
                elif p.dim() >= 2:
                    p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
                else:
                    p.copy_(0.05 * torch.randn(p.shape, generator=gen))
        for p in model.head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / max(1, p.shape[-1]) ** 0.5)
        for name, p in model.decoder.named_parameters():  # audio at a realistic level (fp16 must hold it)
            if "gamma" in name:
                p.copy_(0.5 + 0.1 * torch.randn(p.shape, generator=gen))
            elif "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
        # the EOS classifier must not fire at once: bias its logit low, so EOS comes from the loop's limit
        model.eos.fc2.bias.fill_(-4.0)
    model.scaling, model.bias = 0.5, 0.1


def random_preset(
    model: VibeVoice, seed: int, text_tokens: int = 12, speech_tokens: int = 20
) -> dict[str, dict[str, np.ndarray]]:
    """A voice preset in the released presets' layout, from the model itself: the lm and tts_lm
    prefilled on random text (and, for the tts_lm, random speech embeddings), the negative paths
    on one padding token."""
    import torch
    from transformers import DynamicCache

    gen = torch.Generator().manual_seed(seed + 7)
    dec = model.cfg["decoder"]
    vocab, hidden = dec["vocab_size"], dec["hidden_size"]
    ids = torch.randint(0, vocab, (1, text_tokens), generator=gen)
    neg = torch.full((1, 1), vocab - 1)
    out = {}
    with torch.no_grad():
        for part, token_ids in (("lm", ids), ("neg_lm", neg)):
            cache = DynamicCache()
            h = model.lm(input_ids=token_ids, past_key_values=cache, use_cache=True).last_hidden_state
            out[part] = {"hidden": h.numpy(), **_cache_arrays(cache)}
        text = out["lm"]["hidden"]
        speech = 0.5 * torch.randn(1, speech_tokens, hidden, generator=gen)
        types = torch.cat([torch.ones(text_tokens), torch.zeros(speech_tokens)]).long()[None]
        for part, embeds, t in (
            ("tts_lm", torch.cat([torch.from_numpy(text), speech], 1), types),
            ("neg_tts_lm", torch.from_numpy(out["neg_lm"]["hidden"]), torch.ones(1, 1).long()),
        ):
            cache = DynamicCache()
            h = model.tts_lm(
                inputs_embeds=embeds + model.tts_input_types(t), past_key_values=cache, use_cache=True
            ).last_hidden_state
            out[part] = {"hidden": h.numpy(), **_cache_arrays(cache)}
    return out


def _cache_arrays(cache: Any) -> dict[str, np.ndarray]:
    keys = [layer.keys for layer in cache.layers]
    values = [layer.values for layer in cache.layers]
    return {"k": np.concatenate([k.numpy() for k in keys]), "v": np.concatenate([v.numpy() for v in values])}


def preset_cache(part: dict[str, np.ndarray]) -> Any:
    """A transformers DynamicCache holding a preset part's keys and values."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer in range(part["k"].shape[0]):
        cache.update(
            torch.from_numpy(part["k"][layer : layer + 1]).float(),
            torch.from_numpy(part["v"][layer : layer + 1]).float(),
            layer,
        )
    return cache


def load(weights: WeightsSource, options: VibeVoiceOptions) -> Reference:
    import torch

    size = options.size
    cfg = sizes(size)
    files: dict[str, str] = {}
    if weights.kind == "random":
        torch.manual_seed(weights.seed or 0)
        model = build(cfg)
        randomise(model, weights.seed or 0)
        model.presets = {"random": random_preset(model, weights.seed or 0)}
    else:
        if size != "full":
            raise ValueError(f"the {size!r} architecture only exists with --random-weights")
        model, files = load_checkpoint(_fetch(weights))
    info = {
        "params": sum(
            p.numel()
            for m in (
                model.lm,
                model.tts_lm,
                model.tts_input_types,
                model.connector,
                model.head,
                model.decoder,
                model.eos,
            )
            for p in m.parameters()
        ),
        "size": size,
    }
    return Reference(model, files=files, info=info)


def generate(
    model: VibeVoice,
    text_ids: list[int],
    preset: dict,
    noise: Callable[[int], Any],
    cfg_scale: float = 1.5,
    max_latents: int | None = None,
) -> dict[str, Any]:
    """Upstream's generate loop on the reference modules. ``noise(i)`` is latent i's diffusion noise [1, 64]."""
    import torch

    from .acoustic import StreamingDecoder
    from .diffusion import STEPS, upstream_sample

    lm_cache, tts_cache = preset_cache(preset["lm"]), preset_cache(preset["tts_lm"])
    neg_cache = preset_cache(preset["neg_tts_lm"])
    lm_pos, tts_pos, neg_pos = (
        preset["lm"]["k"].shape[2],
        preset["tts_lm"]["k"].shape[2],
        preset["neg_tts_lm"]["k"].shape[2],
    )
    tts_hidden = torch.from_numpy(preset["tts_lm"]["hidden"][:, -1]).float()
    neg_hidden = torch.from_numpy(preset["neg_tts_lm"]["hidden"][:, -1]).float()
    stream = StreamingDecoder(model.decoder).eval()
    caches = [torch.zeros(shape) for shape in stream.cache_shapes()]
    ids = torch.tensor([text_ids])
    audio, latents, eos_at, window = [], 0, None, 0
    type_text, type_speech = model.tts_input_types.weight[1], model.tts_input_types.weight[0]
    with torch.no_grad():
        while eos_at is None:
            chunk = ids[:, window * C.TEXT_WINDOW : (window + 1) * C.TEXT_WINDOW]
            window += 1
            if chunk.shape[1]:
                n = chunk.shape[1]
                h = model.lm(
                    input_ids=chunk,
                    past_key_values=lm_cache,
                    use_cache=True,
                    position_ids=torch.arange(lm_pos, lm_pos + n)[None],
                ).last_hidden_state
                lm_pos += n
                out = model.tts_lm(
                    inputs_embeds=h + type_text,
                    past_key_values=tts_cache,
                    use_cache=True,
                    position_ids=torch.arange(tts_pos, tts_pos + n)[None],
                ).last_hidden_state
                tts_pos += n
                tts_hidden = out[:, -1]
            for _ in range(C.SPEECH_WINDOW):
                latent = torch.from_numpy(
                    upstream_sample(model.head, torch.cat([tts_hidden, neg_hidden]), noise(latents), cfg_scale, STEPS)
                )
                piece, *caches = stream((latent / model.scaling - model.bias).unsqueeze(-1), *caches)
                audio.append(piece.reshape(-1).numpy())
                latents += 1
                embed = (model.connector(latent) + type_speech)[:, None]
                out = model.tts_lm(
                    inputs_embeds=embed,
                    past_key_values=tts_cache,
                    use_cache=True,
                    position_ids=torch.tensor([[tts_pos]]),
                ).last_hidden_state
                tts_pos += 1
                tts_hidden = out[:, -1]
                neg = model.tts_lm(
                    inputs_embeds=embed,
                    past_key_values=neg_cache,
                    use_cache=True,
                    position_ids=torch.tensor([[neg_pos]]),
                ).last_hidden_state
                neg_pos += 1
                neg_hidden = neg[:, -1]
                if float(torch.sigmoid(eos_logit(model, tts_hidden))[0, 0]) > 0.5:
                    eos_at = latents
                    break
                if max_latents is not None and latents >= max_latents:
                    eos_at = -1
                    break
    return {"audio": np.concatenate(audio), "latents": latents, "eos": eos_at}


# ----------------------------------------------------------------------------- released weights


def config_from_json(raw: dict) -> dict:
    """Our sizes dict from the checkpoint's config.json (VibeVoiceStreamingConfig)."""
    dec = {k: raw["decoder_config"][k] for k in C.DECODER if k in raw["decoder_config"]}
    dec.setdefault("head_dim", dec["hidden_size"] // dec["num_attention_heads"])
    head = raw.get("diffusion_head_config", {})
    acoustic = raw.get("acoustic_tokenizer_config", {})
    depths = acoustic.get("encoder_depths", "3-3-3-3-3-3-8")
    return {
        "decoder": {**C.DECODER, **dec},
        "tts_layers": int(raw.get("tts_backbone_num_hidden_layers", C.TTS_LAYERS)),
        "head_layers": int(head.get("head_layers", 4)),
        "acoustic": {
            "filters": int(acoustic.get("encoder_n_filters", 32)),
            "depths": tuple(int(d) for d in str(depths).split("-")),
        },
    }


def _fetch(weights: WeightsSource) -> Any:
    """A directory laid out like the hub repository (config.json, *.safetensors) plus voices/*.pt."""
    from pathlib import Path

    if weights.kind == "local":
        root = Path(weights.path)
        root = root.parent if root.is_file() else root
    else:
        from ...core.kit.weights import hub_snapshot

        root = hub_snapshot(weights.repo, weights.revision, ["*.json", "*.safetensors"])
    missing = [n for n in ("config.json",) if not (root / n).exists()] + (
        [] if list(root.glob("*.safetensors")) else ["*.safetensors"]
    )
    if missing:
        raise FileNotFoundError(f"{root} lacks {', '.join(missing)} (expected the layout of {C.HUB_REPO})")
    if not list((root / "voices").glob("*.pt")):
        raise FileNotFoundError(
            f"{root}/voices has no voice presets: the hub repository does not carry them; copy microsoft/VibeVoice's "
            "demo/voices/streaming_model/*.pt there and pass --weights DIR"
        )
    return root


def load_checkpoint(root: Any) -> tuple[VibeVoice, dict[str, str]]:
    """Build from config.json and load every module strictly from the checkpoint's names."""
    import torch

    from ...core.kit.files import file_sha256
    from ...core.kit.weights import load_safetensors, read_json
    from . import presets as preset_files
    from .acoustic import decoder_state_from_upstream
    from .diffusion import head_state_from_upstream

    model = build(config_from_json(read_json(root / "config.json", "vibevoice config")))
    files = {"config.json": file_sha256(root / "config.json")}
    state: dict[str, Any] = {}
    for path in sorted(root.glob("*.safetensors")):
        state.update(load_safetensors(path, what="vibevoice weights"))
        files[path.name] = file_sha256(path)

    def part(prefix: str, drop: tuple[str, ...] = ()) -> dict[str, Any]:
        return {
            k[len(prefix) :]: v.float()
            for k, v in state.items()
            if k.startswith(prefix) and not k[len(prefix) :].startswith(drop)
        }

    model.lm.load_state_dict(part("model.language_model.", ("norm.",)), strict=True)
    model.tts_lm.load_state_dict(part("model.tts_language_model.", ("embed_tokens.",)), strict=True)
    model.tts_input_types.load_state_dict(part("model.tts_input_types."), strict=True)
    model.connector.load_state_dict(part("model.acoustic_connector."), strict=True)
    model.head.load_state_dict(head_state_from_upstream(part("model.prediction_head.")), strict=True)
    model.decoder.load_state_dict({k: v.float() for k, v in decoder_state_from_upstream(state).items()}, strict=True)
    model.eos.load_state_dict(part("tts_eos_classifier."), strict=True)
    model.scaling = float(state["model.speech_scaling_factor"])
    model.bias = float(state["model.speech_bias_factor"])
    if not (torch.isfinite(torch.tensor([model.scaling, model.bias])).all()):
        raise ValueError("the checkpoint's speech scaling/bias factors are not finite")
    for path in sorted((root / "voices").glob("*.pt")):
        model.presets[path.stem] = preset_files.load(path)
        files[f"voices/{path.name}"] = file_sha256(path)
    tokenizer = root / "tokenizer.json"
    if tokenizer.exists():
        model.tokenizer_file = tokenizer
        files["tokenizer.json"] = file_sha256(tokenizer)
    else:
        raise FileNotFoundError(f"{root} lacks tokenizer.json (the Qwen2.5 tokenizer upstream's processor uses)")
    for module in (model.lm, model.tts_lm, model.connector, model.head, model.decoder, model.eos):
        module.eval()
    return model, files
