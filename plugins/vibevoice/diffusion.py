"""The speech-latent sampler: diffusion head, DPM-Solver++ and classifier-free guidance in one call.

Upstream (``sample_speech_tokens``) runs the diffusion head 5 times per latent, each
time on the positive and negative conditions (the tts_lm's last hidden state on both
paths), mixes them with the CFG scale and steps a DPM-Solver++ scheduler (2nd order
multistep, cosine schedule over 1000 training steps, v-prediction, first order at
the first and the last step, final sigma zero). Only the first half of its noise
batch reaches the result, so here the noise is a single latent, an input.

The scheduler's arithmetic depends on nothing but the step count, so :func:`solver_steps`
computes each step's timestep and coefficients once, on the host, and the sampler
unrolls the loop with them as constants::

    x0_i    = alpha_i * x_i - sigma_i * v_i                        (v-prediction)
    x_{i+1} = A_i * x_i + B_i * x0_i + C_i * (x0_i - x0_{i-1})     (C_i = 0 at first order)

The head is transformers' ``VibeVoiceDiffusionHead`` (the same layers as upstream's);
:data:`HEAD_KEYS` renames the checkpoint's parameters onto it. The acoustic connector
(latent -> tts_lm input embedding) runs in the same call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: checkpoint name fragment (upstream VibeVoiceDiffusionHead) -> transformers' VibeVoiceDiffusionHead
HEAD_KEYS = (
    ("t_embedder.mlp.0.", "timestep_proj.fc1."),
    ("t_embedder.mlp.2.", "timestep_proj.fc2."),
    ("final_layer.adaLN_modulation.1.", "final_layer.linear_1."),
    ("final_layer.linear.", "final_layer.linear_2."),
    (".adaLN_modulation.1.", ".linear."),
)

TRAIN_STEPS = 1000
STEPS = 5  # the demo's ddpm inference steps


def head_state_from_upstream(state: dict[str, Any]) -> dict[str, Any]:
    renamed = {}
    for key, value in state.items():
        for old, new in HEAD_KEYS:
            if old in key:
                key = key.replace(old, new)
                break
        renamed[key] = value
    return renamed


def head_config(hidden: int, layers: int = 4, ffn_ratio: float = 3.0, latent: int = 64, eps: float = 1e-5) -> Any:
    from transformers.models.vibevoice.configuration_vibevoice import VibeVoiceDiffusionHeadConfig

    return VibeVoiceDiffusionHeadConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        intermediate_size=int(hidden * ffn_ratio),
        latent_size=latent,
        rms_norm_eps=eps,
    )


@dataclass(frozen=True)
class SolverStep:
    timestep: float
    alpha: float  # of the current sample: x0 = alpha * x - sigma * v
    sigma: float
    a: float  # x_{i+1} = a * x_i + b * x0_i + c * (x0_i - x0_{i-1})
    b: float
    c: float


def solver_steps(steps: int = STEPS, train_steps: int = TRAIN_STEPS, betas_dtype: Any = np.float32) -> list[SolverStep]:
    """DPM-Solver++ (2M, lower order at the final step, final sigma 0) for the cosine schedule.
    ``betas_dtype``: diffusers keeps the betas in the default dtype (float32; float64 in the float64 check)."""
    alpha_bar = [math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2 for t in np.arange(train_steps + 1) / train_steps]
    betas = np.array([min(1 - alpha_bar[i + 1] / alpha_bar[i], 0.999) for i in range(train_steps)], dtype=betas_dtype)
    cumprod = np.cumprod(1.0 - betas.astype(np.float64), axis=0)
    timesteps = np.linspace(0, train_steps - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    all_sigmas = np.sqrt((1 - cumprod) / cumprod)
    # diffusers rounds the schedule's sigmas to float32 in numpy, whatever torch's precision
    sigmas = (
        np.concatenate([np.interp(timesteps, np.arange(len(all_sigmas)), all_sigmas), [0.0]])
        .astype(np.float32)
        .astype(np.float64)
    )

    def alpha_sigma(s: float) -> tuple[float, float]:
        alpha = 1.0 / math.sqrt(s * s + 1.0)
        return alpha, s * alpha

    def lam(s: float) -> float:
        alpha, sigma = alpha_sigma(s)
        return math.log(alpha) - (math.log(sigma) if sigma > 0 else -math.inf)

    out = []
    for i, t in enumerate(timesteps):
        alpha_i, sigma_i = alpha_sigma(sigmas[i])
        alpha_n, sigma_n = alpha_sigma(sigmas[i + 1])
        h = lam(sigmas[i + 1]) - lam(sigmas[i])
        phi = math.expm1(-h) if math.isfinite(h) else -1.0  # exp(-h) - 1
        a = sigma_n / sigma_i
        b = -alpha_n * phi
        first_order = i == 0 or i == steps - 1  # the multistep history is empty / lower order at the end
        if first_order:
            c = 0.0
        else:
            r0 = (lam(sigmas[i]) - lam(sigmas[i - 1])) / h
            c = -0.5 * alpha_n * phi / r0
        out.append(SolverStep(float(t), float(alpha_i), float(sigma_i), float(a), float(b), float(c)))
    return out


class SpeechConnector(nn.Module):
    """Upstream's acoustic connector: fc1 (latent -> hidden), RMSNorm, fc2 (checkpoint names)."""

    def __init__(self, latent: int, hidden: int, eps: float = 1e-6):
        super().__init__()
        from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

        self.fc1 = nn.Linear(latent, hidden)
        self.norm = Qwen2RMSNorm(hidden, eps=eps)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.norm(self.fc1(latent)))


def rms_norm_last(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last axis, x / sqrt(mean(x^2) + eps), as a LayerNorm of [x, -x] (mean 0,
    variance mean(x^2)). Not ``F.rms_norm``: coremltools 9.0 converts it as sqrt(mean((x/m)^2) + eps) * m
    with m = max|x|, which scales eps by m^2 — another function (the small sampler package measured
    3e-5 from float64 truth against torch's 4e-7). Not x.pow(2) either: fp16 overflows above 256."""
    d = x.shape[-1]
    return F.layer_norm(torch.cat([x, -x], dim=-1), (2 * d,), eps=eps)[..., :d]


def head_forward(
    head: nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor
) -> torch.Tensor:
    """transformers' VibeVoiceDiffusionHead.forward with its final layer's RMSNorm as :func:`rms_norm_last`."""
    hidden = head.noisy_images_proj(noisy)
    embedded = head.timestep_proj(head.timestep_embedding(timesteps).to(timesteps.dtype))
    condition = head.cond_proj(condition) + embedded
    for layer in head.layers:
        hidden = layer(hidden, condition)
    final = head.final_layer
    shift, scale = final.linear_1(final.act_fn(condition)).chunk(2, dim=-1)
    return final.linear_2(rms_norm_last(hidden, final.rms_norm_eps) * (1 + scale) + shift)


class Sampler(nn.Module):
    """condition [2, C] (positive, negative), noise [1, latent], cfg [1] -> latent [1, latent], embed [1, C].

    ``latent`` is the next speech latent (upstream's ``speech_latent``: the acoustic decoder
    scales it), ``embed`` the connector's embedding of it for the next tts_lm step.
    """

    def __init__(
        self, head: nn.Module, connector: nn.Module, steps: list[SolverStep], steps64: list[SolverStep] | None = None
    ):
        super().__init__()
        self.head, self.connector, self.steps = head, connector, steps
        #: the same schedule from float64 betas, used when the sampler runs in float64 (the parity check)
        self.steps64 = steps64 or steps

    def forward(
        self, condition: torch.Tensor, noise: torch.Tensor, cfg: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = noise
        previous = None
        for step in self.steps64 if noise.dtype == torch.float64 else self.steps:
            both = torch.cat([x, x], dim=0)
            t = torch.full((2,), step.timestep, dtype=noise.dtype)
            v = head_forward(self.head, both, t, condition)
            guided = v[1:2] + cfg.view(1, 1) * (v[0:1] - v[1:2])
            x0 = step.alpha * x - step.sigma * guided
            x = step.a * x + step.b * x0
            if step.c != 0.0 and previous is not None:
                x = x + step.c * (x0 - previous)
            previous = x0
        return x, self.connector(x)


def upstream_sample(head: nn.Module, condition: Any, noise: Any, cfg_scale: float, steps: int = STEPS) -> Any:
    """What upstream's sample_speech_tokens computes, with diffusers' DPMSolverMultistepScheduler
    (upstream's ``schedule/dpm_solver.py`` is that scheduler; ``squaredcos_cap_v2`` is its cosine
    schedule) and ``noise`` as the first half of its noise batch."""
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=TRAIN_STEPS, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    scheduler.set_timesteps(steps)
    condition = torch.as_tensor(condition)
    speech = torch.cat([torch.as_tensor(noise), torch.zeros_like(torch.as_tensor(noise))], dim=0)
    with torch.no_grad():
        for t in scheduler.timesteps:
            half = speech[: len(speech) // 2]
            combined = torch.cat([half, half], dim=0)
            eps = head(combined, t.repeat(combined.shape[0]).to(combined), condition)
            cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
            half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
            eps = torch.cat([half_eps, half_eps], dim=0)
            speech = scheduler.step(eps, t, speech).prev_sample
    return speech[: len(speech) // 2].numpy()
