"""VibeVoice speech-latent sampler: the fused DPM-Solver++ / CFG loop against the scheduler loop."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers", reason="the reference scheduler is diffusers' DPMSolverMultistepScheduler")

from zoo.plugins.vibevoice.diffusion import (  # noqa: E402  (after the skips above)
    HEAD_KEYS,
    Sampler,
    SpeechConnector,
    head_config,
    head_state_from_upstream,
    solver_steps,
    upstream_sample,
)

HIDDEN = 128


def _sampler(seed=0):
    from transformers.models.vibevoice.modeling_vibevoice import VibeVoiceDiffusionHead

    torch.manual_seed(seed)
    head = VibeVoiceDiffusionHead(head_config(HIDDEN)).eval()
    with torch.no_grad():  # upstream zero-initialises the modulation and final layers: random weights must not
        for p in head.parameters():
            p.copy_(torch.randn_like(p) / max(1, p.shape[-1]) ** 0.5)
    return Sampler(head, SpeechConnector(64, HIDDEN).eval(), solver_steps()).eval()


@pytest.mark.parametrize("cfg_scale", [1.0, 1.5, 3.0])
def test_fused_sampler_matches_the_scheduler_loop(cfg_scale):
    sampler = _sampler()
    gen = torch.Generator().manual_seed(1)
    condition, noise = torch.randn(2, HIDDEN, generator=gen), torch.randn(1, 64, generator=gen)
    with torch.no_grad():
        latent, embed = sampler(condition, noise, torch.tensor([cfg_scale]))
        want_embed = sampler.connector(torch.from_numpy(upstream_sample(sampler.head, condition, noise, cfg_scale)))
    want = upstream_sample(sampler.head, condition, noise, cfg_scale)
    assert np.abs(latent.numpy() - want).max() <= 1e-5 * np.abs(want).max()  # measured 3e-7 relative
    assert torch.allclose(embed, want_embed, rtol=1e-4, atol=1e-5)
    assert not np.allclose(want, noise.numpy(), atol=0.1)  # the head's weights are not zero: the loop did something


def test_solver_steps_are_the_schedulers():
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    scheduler.set_timesteps(5)
    steps = solver_steps()
    assert [s.timestep for s in steps] == [float(t) for t in scheduler.timesteps] == [999.0, 799.0, 599.0, 400.0, 200.0]
    assert [s.c == 0.0 for s in steps] == [True, False, False, False, True]  # first order at both ends
    assert steps[-1].a == 0.0 and steps[-1].b == 1.0  # final sigma zero: the last step returns x0


def test_checkpoint_names_load_into_the_transformers_head():
    sampler = _sampler()
    upstream = {}
    for key, value in sampler.head.state_dict().items():
        for old, new in HEAD_KEYS:  # back to the checkpoint's names
            if new in key:
                key = key.replace(new, old)
                break
        upstream[key] = value
    assert "t_embedder.mlp.0.weight" in upstream and "layers.0.adaLN_modulation.1.weight" in upstream
    assert "final_layer.linear.weight" in upstream and "final_layer.adaLN_modulation.1.weight" in upstream
    fresh = _sampler(seed=5).head
    fresh.load_state_dict(head_state_from_upstream(upstream), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), sampler.head.state_dict().values()))


@pytest.mark.slow
def test_converted_sampler_executes_like_torch(tmp_path):
    from zoo.core.host.defaults import save_component
    from zoo.core.mil import MilProgram
    from zoo.core.plugin.spec import Variant
    from zoo.core.plugin.traceable import TensorSpec, Traceable

    sampler = _sampler()
    rng = np.random.default_rng(2)
    example = {
        "condition": rng.standard_normal((2, HIDDEN)).astype(np.float32),
        "noise": rng.standard_normal((1, 64)).astype(np.float32),
        "cfg": np.array([1.5], np.float32),
    }
    traceable = Traceable(
        sampler,
        [TensorSpec("condition", (2, HIDDEN)), TensorSpec("noise", (1, 64)), TensorSpec("cfg", (1,))],
        ["latent", "embed"],
        [example],
    )
    package = save_component({"main": traceable}, Variant("v", "fp32"), tmp_path / "sampler.mlpackage")
    got = MilProgram.load(package).run(example)
    want = traceable.run(example)
    for name in ("latent", "embed"):
        assert np.abs(got[name] - want[name]).max() <= 1e-4 * np.abs(want[name]).max(), name
