"""load_reference for Kokoro-82M: upstream ``kokoro.KModel`` from the hub, a local directory, or random weights.

Random weights: the real architecture from the real hyper-parameters (see
config.py), seeded, with the duration projection's bias set so that durations are
realistic (2-3 frames per token), and a seeded random voice pack.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core import Reference, WeightsSource
from ...core.kit.files import file_sha256
from ...core.kit.weights import WeightsError, hub_snapshot, load_torch, read_json
from .config import CONFIG, HUB_REPO, SMALL_DECODER_WIDTH, WEIGHTS_FILE, small_config
from .options import KokoroOptions


@dataclass
class KokoroReference:
    model: Any  # kokoro.KModel, weight norm removed, eval mode
    config: dict
    voices: dict[str, Any] = field(default_factory=dict)  # name -> voice pack [510, 1, 256]


def remove_weight_norm(model: Any) -> None:
    """Fold weight norm into plain weights (its reparametrisation does not convert)."""
    import torch

    for module in model.modules():
        if hasattr(module, "weight_g") and hasattr(module, "weight_v"):
            torch.nn.utils.remove_weight_norm(module)


def build(config: dict, weights_file: Path | None) -> Any:
    """KModel from a config dict; with no weights file, from an empty state (no download)."""
    import torch
    from kokoro import KModel

    with tempfile.TemporaryDirectory() as tmp:
        if weights_file is None:
            weights_file = Path(tmp) / "empty.pth"
            torch.save({}, weights_file)
        model = KModel(repo_id=HUB_REPO, config=config, model=str(weights_file))
    return model


def narrow_decoder(model: Any, config: dict, width: int) -> None:
    """Upstream's Decoder with its AdaIN blocks ``width`` wide instead of the 1024 it hard-codes, and
    the last one feeding the generator's ``upsample_initial_channel``: the same classes and
    wiring (encode, three blocks on [x, asr_res, F0, N], an upsampling block), narrower. Tests only."""
    from kokoro.istftnet import AdainResBlk1d
    from torch import nn

    decoder, style = model.decoder, config["style_dim"]
    residual = decoder.asr_res[0].out_channels  # 64: concatenated with F0 and N before each block
    generator_in = config["istftnet"]["upsample_initial_channel"]
    decoder.encode = AdainResBlk1d(config["hidden_dim"] + 2, width, style)
    decoder.decode = nn.ModuleList(
        [AdainResBlk1d(width + 2 + residual, width, style) for _ in range(3)]
        + [AdainResBlk1d(width + 2 + residual, generator_in, style, upsample=True)]
    )


def randomise(model: Any, seed: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            elif (
                "norm" in name
                or "gamma" in name
                or name.endswith("alpha")
                or name.endswith(".weight")
                and "LayerNorm" in name
            ):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        for name, p in model.named_parameters():  # Snake alphas and norms must stay away from zero
            if ".alpha" in name:
                p.copy_(1.0 + 0.2 * torch.rand(p.shape, generator=gen))
        proj = model.predictor.duration_proj.linear_layer
        proj.weight.mul_(3.0)
        # sum of max_dur sigmoids ~= 2-3 frames per token, varying from token to token
        target = 2.2 / proj.out_features
        proj.bias.copy_(
            torch.log(torch.tensor(target / (1 - target))) + 0.3 * torch.randn(proj.bias.shape, generator=gen)
        )
        # F0 around 150 Hz (above the 10 Hz voicing threshold: the harmonic source must be exercised)
        model.predictor.F0_proj.weight.mul_(20.0)
        model.predictor.F0_proj.bias.fill_(150.0)
        # keep exp() of the generator's magnitude branch in a sane range
        model.decoder.generator.conv_post.weight.mul_(0.01)
        model.decoder.generator.conv_post.bias.zero_()


def random_voice(seed: int, style_dim: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    return 0.15 * torch.randn((510, 1, 2 * style_dim), generator=gen)


def load(weights: WeightsSource, options: KokoroOptions, voices: list[str] | None = None) -> Reference:
    import torch

    size = options.size
    files: dict[str, str] = {}
    if weights.kind == "random":
        config = CONFIG if size == "full" else small_config()
        torch.manual_seed(weights.seed or 0)
        model = build(config, None)
        if size != "full":
            narrow_decoder(model, config, SMALL_DECODER_WIDTH)
        remove_weight_norm(model)  # before randomising: weight norm recomputes weights from g and v
        randomise(model, weights.seed or 0)
        ref = KokoroReference(model, config, {"random": random_voice(weights.seed or 0, config["style_dim"])})
    else:
        if size != "full":
            raise ValueError(f"the {size!r} architecture only exists with --random-weights")
        root = _fetch(weights)
        config = read_json(root / "config.json", "kokoro config")
        if not isinstance(config, dict) or "vocab" not in config or "istftnet" not in config:
            raise WeightsError(
                f"kokoro config {root / 'config.json'} is not Kokoro's config.json (no 'vocab' / 'istftnet')"
            )
        load_torch(
            root / WEIGHTS_FILE, "kokoro checkpoint"
        )  # a clear message for a damaged file (KModel loads it again)
        model = build(config, root / WEIGHTS_FILE)
        files = {"config.json": file_sha256(root / "config.json"), WEIGHTS_FILE: file_sha256(root / WEIGHTS_FILE)}
        ref = KokoroReference(model, config)
        for pack in sorted((root / "voices").glob("*.pt")) if (root / "voices").is_dir() else []:
            if voices and pack.stem not in voices:
                continue
            ref.voices[pack.stem] = load_torch(pack, "kokoro voice pack")  # a plain tensor
            files[f"voices/{pack.name}"] = file_sha256(pack)
    remove_weight_norm(ref.model)
    ref.model.eval()
    info = {"params": sum(p.numel() for p in ref.model.parameters()), "size": size}
    return Reference(ref, files=files, info=info)


def _fetch(weights: WeightsSource) -> Path:
    """A directory laid out like the hub repository: config.json, kokoro-v1_0.pth, voices/*.pt."""
    if weights.kind == "local":
        root = Path(weights.path)
        if root.is_file():
            root = root.parent
        missing = [n for n in ("config.json", WEIGHTS_FILE) if not (root / n).exists()]
        if missing:
            raise FileNotFoundError(f"{root} lacks {', '.join(missing)} (expected the layout of {HUB_REPO})")
        return root
    return hub_snapshot(weights.repo, weights.revision, ["config.json", WEIGHTS_FILE, "voices/*.pt"])
