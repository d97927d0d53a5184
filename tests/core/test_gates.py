"""The validation gates hold for any weights and catch the bugs they exist for.

* Property grid: every plugin's ``reference`` level (float64 exactness, fp32 within
  a multiple of upstream's own rounding, integer outputs exact) passes on its small
  architecture at 3 seeds x weight scales {0.25, 1, 4} (every parameter scaled,
  norm gains included) — a bound tuned on one set of weights would not.
* Mutation tests: each injects one port bug that a first CoreML port of these models
  really had (shared/seeds/pocket-tts-coreml-trial-log.md, and the issues since) into
  the port only, and shows that the gate fails — at the ``reference`` level unless
  the test names another.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.core import WeightsSource
from zoo.core.host.plugins import PluginHost
from zoo.core.host.session import ModelSession
from zoo.core.kit.float64 import modules_in
from zoo.core.validation.checks import loop_checks
from zoo.core.validation.levels import reference as reference_level

SEEDS = (0, 1, 2)
SCALES = (0.25, 1.0, 4.0)


class Subject:
    """One plugin's small variant with seeded random weights, scalable in place."""

    def __init__(self, plugin: str, variant: str, seed: int, options: dict | None = None):
        import dataclasses

        host = PluginHost()
        self.model = host.model(plugin)
        variant_spec = self.model.variant(variant)
        if options:
            variant_spec = dataclasses.replace(variant_spec, options={**variant_spec.options, **options})
        self.variant = variant_spec
        self.session = ModelSession(host, plugin, self.variant, WeightsSource.random(seed))
        self.reference = self.session.reference()
        self._originals = [(p, p.detach().clone()) for m in modules_in(self.reference.model) for p in m.parameters()]

    def scale(self, factor: float) -> None:
        with torch.no_grad():
            for param, original in self._originals:
                param.copy_(original * factor)

    def traceables(self) -> dict:
        return self.session.traceables(fresh=True)  # the weights may have been scaled since

    def checks(
        self,
        component: str,
        functions: list[str] | None = None,
        traceables: dict | None = None,
        examples: int | None = None,
    ) -> list:
        import dataclasses

        fns = (traceables or self.traceables())[component]
        if functions:
            fns = {f: fns[f] for f in functions}
        if examples:
            fns = {f: dataclasses.replace(t, examples=t.examples[:examples]) for f, t in fns.items()}
        return reference_level.check_component(self.model, self.variant, component, self.reference.model, fns).checks

    def loop_checks(self, tmp_path) -> list:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.traceables()
        return loop_checks(self.session.loop_parity(self.session.torch_runtime(tmp_path)))


def failed(checks: list, metric: str | None = None) -> list:
    return [c for c in checks if c.status == "failed" and (metric is None or c.metric == metric)]


def assert_all_pass(checks: list, context: str) -> None:
    bad = [f"{c.component} {c.metric} {c.value} > {c.threshold} {c.reason}" for c in checks if c.status != "passed"]
    assert not bad, f"{context}: {bad}"
    assert any(c.metric.startswith("float64") for c in checks), f"{context}: no float64 check ran"


# ------------------------------------------------------------------------------ property grid
#: what the grid checks per component: (functions, examples per function); None = all. kokoro's five
#: predictor buckets run the same modules, and its decoder is slow: one bucket, one decoder example.
GRID = {
    "pocket_tts": ("small-fp32", {}),
    "vibevoice": ("small-fp32", {}),
    "kokoro": ("small-fp32", {"predictor": (["tokens32"], None), "decoder": (None, 1)}),
    "qwen3_speaker": ("small-fp32", {}),
}
#: where upstream itself overflows, so no gate can pass: it must fail, saying why. KModel's decoder
#: with every weight x4 produces no finite sample (exp of the generator's log-magnitudes).
OVERFLOWS = {("kokoro", "decoder", 4.0)}


@pytest.mark.slow
@pytest.mark.parametrize("plugin", sorted(GRID))
def test_reference_gates_hold_across_seeds_and_weight_scales(plugin):
    pytest.importorskip(
        {"pocket_tts": "pocket_tts", "kokoro": "kokoro", "vibevoice": "transformers", "qwen3_speaker": "librosa"}[
            plugin
        ]
    )
    variant, subset = GRID[plugin]
    for seed in SEEDS:
        subject = Subject(plugin, variant, seed)
        for scale in SCALES:
            subject.scale(scale)
            traceables = subject.traceables()
            for component in traceables:
                functions, examples = subset.get(component, (None, None))
                checks = subject.checks(component, functions, traceables, examples)
                context = f"{plugin} seed {seed} scale {scale} {component}"
                if (plugin, component, scale) in OVERFLOWS:
                    assert failed(checks) and all("non-finite" in c.reason for c in failed(checks)), context
                else:
                    assert_all_pass(checks, context)


# ------------------------------------------------------------------------------ mutations: pocket_tts
pytest.importorskip("pocket_tts")
from zoo.plugins.pocket_tts import flowlm as pocket  # noqa: E402
from zoo.plugins.pocket_tts import layers as pocket_layers  # noqa: E402


@pytest.fixture(scope="module")
def pocket_subject():
    return Subject("pocket_tts", "small-fp32", 0)


@pytest.fixture(scope="module")
def pocket_multistep():
    """decode_steps 4: with the default single LSD step, s = i/N is 0 anyway and t = 1."""
    return Subject("pocket_tts", "small-fp32", 0, {"decode_steps": 4})


def test_control_unmutated_pocket_passes(pocket_subject, pocket_multistep):
    for subject in (pocket_subject, pocket_multistep):
        assert_all_pass(subject.checks("flowlm"), "unmutated flowlm")


def test_exact_gelu_instead_of_tanh_gelu_is_caught(pocket_subject, monkeypatch):
    """Trap: FlowLM's feed-forward uses the tanh approximation of GELU; a port writing F.gelu is off by ~1e-3."""
    from torch.nn import functional as F

    def exact_gelu_block(layer, x, q, keys, values, mask):
        t = q.shape[2]
        out = F.scaled_dot_product_attention(q, keys, values, mask, dropout_p=0.0)
        x = x + layer.layer_scale_1(layer.self_attn.out_proj(out.transpose(1, 2).reshape(1, t, -1)))
        return x + layer.layer_scale_2(layer.linear2(F.gelu(layer.linear1(layer.norm2(x)))))  # the bug: exact GELU

    monkeypatch.setattr(pocket_layers, "attend_and_feed_forward", exact_gelu_block)
    assert failed(pocket_subject.checks("flowlm"), "float64_rel")


def test_dropped_attention_mask_is_caught(pocket_subject, monkeypatch):
    original = pocket_layers.attend_and_feed_forward
    monkeypatch.setattr(
        pocket_layers, "attend_and_feed_forward", lambda layer, x, q, k, v, mask: original(layer, x, q, k, v, None)
    )
    assert failed(pocket_subject.checks("flowlm", ["prefill"]), "float64_rel")


def test_padded_conditioning_rows_leaking_into_the_cache_are_caught(pocket_subject, monkeypatch):
    """Seeds' bug 3: zero-padded conditioning tokens still write KV entries (LayerNorm and FFN biases)."""

    def leaky(self, cond, kv, pos, valid):
        _, rows = self.transformer(cond, kv, pos, torch.full_like(valid, cond.shape[1]))  # the bug: valid ignored
        return pocket._rows(rows, len(self.transformer.layers))

    monkeypatch.setattr(pocket.Prefill, "forward", leaky)
    assert failed(pocket_subject.checks("flowlm", ["prefill"]), "float64_rel")


def _step_with_times(times):
    """Step.forward with the flow decoder's (s, t) for step i of n given by ``times(i, n)``."""

    def forward(self, latent, noise, kv, pos):
        x = self.input_linear(latent.view(1, 1, -1))
        hidden, rows = self.transformer(x, kv, pos, torch.ones(1, dtype=torch.int32))
        hidden = self.out_norm(hidden)[:, -1].to(torch.float32)
        eos = self.out_eos(hidden)
        current, n = noise, self.decode_steps
        for i in range(n):
            s_value, t_value = times(i, n)
            s = torch.full_like(noise[..., :1], s_value)
            t = torch.full_like(noise[..., :1], t_value)
            current = current + self.flow_net(hidden, s, t, current) / n
        return current, eos, pocket._rows(rows, len(self.transformer.layers))

    return forward


@pytest.mark.parametrize(
    "bug, times",
    [
        ("s hard-coded to 0 (seeds' bug 1)", lambda i, n: (0.0, (i + 1) / n)),
        ("t off by one (seeds' bug 2)", lambda i, n: (i / n, i / n)),
        ("s and t swapped", lambda i, n: ((i + 1) / n, i / n)),
    ],
)
def test_flow_decoder_time_bugs_are_caught(pocket_multistep, monkeypatch, bug, times):
    monkeypatch.setattr(pocket.Step, "forward", _step_with_times(times))
    assert failed(pocket_multistep.checks("flowlm", ["step"]), "float64_rel"), bug


def test_control_correct_times_pass(pocket_multistep, monkeypatch):
    """The harness itself: the same re-implementation with the right times passes."""
    monkeypatch.setattr(pocket.Step, "forward", _step_with_times(lambda i, n: (i / n, (i + 1) / n)))
    assert_all_pass(pocket_multistep.checks("flowlm", ["step"]), "correct times")


def test_text_first_conditioning_is_caught_by_loop_parity(pocket_subject, monkeypatch, tmp_path):
    """Seeds' bug 5: the text prefilled before the voice; caught by ``loop:utterance`` (reference level)."""
    from zoo.plugins.pocket_tts import loop

    control = pocket_subject.loop_checks(tmp_path / "control")
    assert control and not failed(control)
    original = loop.prefill

    def text_first(runtime, kv, pos, tokens, chunk):
        if pos == 0:
            return original(runtime, kv, pos, tokens, chunk)
        voice = kv[:, :, :pos].copy()
        kv[:, :, :pos] = 0
        end = original(runtime, kv, 0, tokens, chunk)
        kv[:, :, end : end + pos] = voice
        return end + pos

    monkeypatch.setattr(loop, "prefill", text_first)
    assert failed(pocket_subject.loop_checks(tmp_path / "mutated"))


# ------------------------------------------------------------------------------ mutations: vibevoice
@pytest.fixture(scope="module")
def vibevoice_subject():
    pytest.importorskip("transformers")
    return Subject("vibevoice", "small-fp32", 0)


def test_wrong_rope_position_is_caught(vibevoice_subject, monkeypatch):
    from zoo.core.kit import ane
    from zoo.plugins.vibevoice import lm

    assert_all_pass(vibevoice_subject.checks("lm"), "unmutated lm")
    monkeypatch.setattr(
        lm, "rope_rows", lambda cos, sin, position, length: ane.rope_rows(cos, sin, position + 1, length)
    )
    assert failed(vibevoice_subject.checks("lm"), "float64_rel")
    assert failed(vibevoice_subject.checks("tts_lm"), "float64_rel")


# ------------------------------------------------------------------------------ mutations: kokoro
@pytest.fixture(scope="module")
def kokoro_subject():
    pytest.importorskip("kokoro")
    return Subject("kokoro", "small-fp32", 0)


def test_padding_leaking_into_the_predictor_lstm_is_caught(kokoro_subject, monkeypatch):
    """The masked BiLSTM's backward direction must start at the last valid token, not the bucket's end."""
    from zoo.plugins.kokoro import traceables as kokoro

    def unmasked(self, x, valid, keep):
        forward_out, _ = self.forward_lstm(x)
        backward_out, _ = self.backward_lstm(torch.flip(x, [1]))  # the bug: runs in from the padding
        return torch.cat([forward_out, torch.flip(backward_out, [1])], dim=-1) * keep.view(1, x.shape[1], 1)

    monkeypatch.setattr(kokoro.MaskedBiLSTM, "forward", unmasked)
    checks = kokoro_subject.checks("predictor", ["tokens64"])
    assert failed(checks, "float64_rel")


@pytest.mark.slow
def test_remainder_trap_in_the_decoder_is_caught_by_its_fp32_mil_bound(kokoro_subject, monkeypatch, tmp_path):
    """The remainder trap (``torch.remainder(x, 1.0)`` instead of ``x - floor(x)`` in kokoro's harmonic
    source) is invisible in torch, where both agree; converted, the remainder executes as zeros. The
    whole decoder, converted with the trap and judged at the mil level against the fp32 bound its
    reference level measured, fails; the same decoder without it passes (the control).
    (tests/plugins/kokoro/test_kokoro_decoder.py converts the source alone: 0.63 vs 4e-4.)"""
    from unittest import mock

    from zoo.plugins.kokoro.decoder import HarmonicSource

    (tmp_path / "ours").mkdir()
    ours = _mil_checks(kokoro_subject, "decoder", tmp_path / "ours")
    assert not failed(ours), [c for c in ours if c.status == "failed"]
    original = HarmonicSource.forward

    def remainder_forward(self, f0, noise):
        with mock.patch("torch.floor", lambda x: x - torch.remainder(x, 1.0)):  # rad - floor(rad) == rad % 1
            return original(self, f0, noise)

    monkeypatch.setattr(HarmonicSource, "forward", remainder_forward)
    (tmp_path / "trap").mkdir()
    trapped = _mil_checks(kokoro_subject, "decoder", tmp_path / "trap")
    assert failed(trapped, "spectral_max"), [(c.metric, c.value, c.threshold) for c in trapped]


def test_float64_check_is_skipped_with_its_reason_when_upstream_cannot_run_in_float64(pocket_subject, monkeypatch):
    """Never a pass: an upstream that fails in float64 records the float64 check as skipped, naming why."""
    traceables = pocket_subject.traceables()
    step = traceables["flowlm"]["step"]
    original = step.reference

    def float32_only(**inputs):
        if any(np.asarray(v).dtype == np.float64 for v in inputs.values()):
            raise RuntimeError("no float64 kernel for this op")
        return original(**inputs)

    step.reference = float32_only
    checks = pocket_subject.checks("flowlm", ["step"], traceables)
    skipped = [c for c in checks if c.metric == "float64_rel"]
    assert [c.status for c in skipped] == ["skipped"] and "no float64 kernel" in skipped[0].reason
    from zoo.core.validation.checks import level_reached

    assert level_reached(checks) is None  # a skipped check is not a pass


def _mil_checks(subject, component: str, tmp_path) -> list:
    """The component's reference level, then its package converted and judged at the mil level
    against the bound the reference level measured (what the pipeline does)."""
    from zoo.core.host.defaults import save_component
    from zoo.core.validation import parity
    from zoo.core.validation.levels import level

    functions = subject.traceables()[component]
    result = reference_level.check_component(
        subject.model, subject.variant, component, subject.reference.model, functions
    )
    parity.save(tmp_path / "parity.safetensors.gz", result.cases)
    tolerance, basis = result.calibration.resolve(
        subject.model.tolerance(component, subject.variant.precision, "mil"), subject.variant.precision
    )
    package = save_component(functions, subject.variant, tmp_path / f"{component}.mlpackage")
    return level("mil").execute(component, package, tmp_path / "parity.safetensors.gz", tolerance, basis=basis)


@pytest.mark.slow
def test_coremltools_rms_norm_conversion_is_caught_at_the_mil_level(vibevoice_subject, monkeypatch, tmp_path):
    """coremltools 9.0 converts F.rms_norm as sqrt(mean((x/m)^2) + eps) * m, m = max|x|: eps scaled by m^2.
    Invisible in torch (the reference level passes); the calibrated mil bound (16x upstream's own fp32
    error) catches it. The sampler's final layer therefore computes RMSNorm as a LayerNorm of [x, -x]."""
    from zoo.plugins.vibevoice import diffusion

    (tmp_path / "ours").mkdir()
    assert not failed(_mil_checks(vibevoice_subject, "sampler", tmp_path / "ours"))
    monkeypatch.setattr(diffusion, "head_forward", lambda head, noisy, t, condition: head(noisy, t, condition))
    (tmp_path / "upstream").mkdir()
    assert failed(_mil_checks(vibevoice_subject, "sampler", tmp_path / "upstream"), "rel")
