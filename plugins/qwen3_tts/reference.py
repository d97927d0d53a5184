"""load_reference: upstream's ``Qwen3TTSSpeakerEncoder`` from a base checkpoint (hub at the pinned
revision, or a local directory laid out like it) or seeded random weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core import Reference, WeightsSource
from ...core.kit.files import file_sha256
from ...core.kit.weights import WeightsError, hub_snapshot, load_prefixed, read_json
from .config import CHECKPOINTS, DEFAULT_CHECKPOINT, HUB_FILES, TENSOR_PREFIX, encoder_config, small_config
from .options import SpeakerOptions


@dataclass
class SpeakerReference:
    encoder: Any  # upstream Qwen3TTSSpeakerEncoder, eval mode
    config: dict = field(default_factory=dict)


def randomise(encoder: Any, seed: int) -> None:
    """Seeded weights of the scale training gives (unit-variance activations through each block)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def _config_of(directory: Path) -> dict[str, Any]:
    config = read_json(directory / "config.json", "checkpoint config")
    if config.get("tts_model_type", "base") != "base" or "speaker_encoder_config" not in config:
        raise WeightsError(
            f"checkpoint {directory} has no speaker encoder (tts_model_type {config.get('tts_model_type')!r}): "
            "only the Base checkpoints carry one"
        )
    return {**encoder_config(1024), **config["speaker_encoder_config"]}


def load(weights: WeightsSource, options: SpeakerOptions) -> Reference:
    from . import upstream

    checkpoint = options.checkpoint or DEFAULT_CHECKPOINT
    files: dict[str, str] = {}
    if weights.kind == "random":
        config = small_config() if options.size == "small" else encoder_config(CHECKPOINTS[checkpoint][2])
        encoder = upstream.encoder(config)
        randomise(encoder, weights.seed or 0)
        return Reference(SpeakerReference(encoder, config), files=files, info={"checkpoint": checkpoint})
    if options.size == "small":
        raise WeightsError("the small variants are for --random-weights only: use fp16 or fp32 with real weights")
    if weights.kind == "local":
        directory = Path(weights.path)
        if not directory.is_dir():
            raise WeightsError(f"--weights {directory} is not a directory laid out like {CHECKPOINTS[checkpoint][0]}")
    else:
        repo, revision, _ = CHECKPOINTS[checkpoint]  # the session resolved them from the ModelSpec: the same
        directory = hub_snapshot(weights.repo or repo, weights.revision or revision, HUB_FILES)
    config = _config_of(directory)
    tensors, read = load_prefixed(directory, TENSOR_PREFIX, "checkpoint")
    encoder = upstream.encoder(config)
    missing, unexpected = encoder.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise WeightsError(
            f"checkpoint {directory}: the speaker encoder's tensors do not match its config "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    encoder.float()
    for file in [directory / "config.json", *read]:
        files[file.name] = file_sha256(file)
    return Reference(SpeakerReference(encoder, config), files=files, info={"checkpoint": checkpoint})
