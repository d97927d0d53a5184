"""Regression tests for the bugs the seed port went through (see shared/seeds/pocket-tts-coreml-trial-log.md).

Each test compares against upstream pocket-tts and also shows that the wrong
behaviour would be caught (a negative control), so none of them can pass vacuously.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from pocket import SMALL, small_components, small_ref, small_runtime, small_session  # noqa: F401  (fixtures)

from zoo.plugins.pocket_tts import flowlm
from zoo.plugins.pocket_tts import reference as upstream


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _rows(components, cond, kv, pos, valid):
    t = components["flowlm"]["prefill"]
    return t.run({"cond": cond, "kv": kv, "pos": np.array([pos], np.int32), "valid": np.array([valid], np.int32)})[
        "kv_new"
    ]


def _prefill(components, cond, kv, pos, valid):
    """The cache after a prefill call, stored as the run loop stores it (the first `valid` rows at `pos`)."""
    return flowlm.write_rows(kv, _rows(components, cond, kv, pos, valid), pos, valid)


def test_padding_never_writes_cache_nor_advances_position(small_ref, small_components):
    """Trial 8: zero-padded conditioning created real cache entries and moved the position to 150."""
    ex = small_components["flowlm"]["prefill"].examples[1]
    kv, pos = ex["kv"], int(ex["pos"][0])
    rng = np.random.default_rng(1)
    chunk = ex["cond"].shape[1]
    tokens = rng.standard_normal((1, chunk, ex["cond"].shape[2])).astype(np.float32)
    zero_padded = tokens.copy()
    zero_padded[:, 5:] = 0
    garbage_padded = tokens.copy()
    garbage_padded[:, 5:] = 100 * rng.standard_normal(garbage_padded[:, 5:].shape)
    rows = _rows(small_components, garbage_padded, kv, pos, 5)
    assert not rows[:, :, 5:].any()  # the padding's rows are zeros: nothing to write
    a = _prefill(small_components, zero_padded, kv, pos, 5)
    b = flowlm.write_rows(kv, rows, pos, 5)
    assert max_diff(a, b) == 0  # what sits in the padding does not matter
    assert max_diff(a[:, :, pos + 5 :], kv[:, :, pos + 5 :]) == 0  # nothing written past the valid tokens
    want = flowlm.write_rows(
        kv, upstream.upstream_prefill(small_ref.tts, tokens, kv, np.array([pos]), np.array([5]))["kv_new"], pos, 5
    )
    assert max_diff(a, want) <= 1e-4
    # negative control: treating the zero padding as tokens (the seed bug) writes different entries
    bug = _prefill(small_components, zero_padded, kv, pos, chunk)
    assert max_diff(bug[:, :, pos + 5 :], kv[:, :, pos + 5 :]) > 1e-2
    # the position advanced by exactly `valid`: the next 5 tokens land right after
    second = np.zeros_like(tokens)
    second[:, :5] = tokens[:, 5:10]
    again = _prefill(small_components, second, a, pos + 5, 5)
    both = _prefill(small_components, tokens, kv, pos, 10)
    assert max_diff(again, both) <= 1e-5


def test_voice_first_then_text(small_ref, small_components):
    """Trial 11: text-first conditioning gave 0.6-0.9 cosine in the cache and unintelligible speech."""
    tts = small_ref.tts
    voice_state = small_ref.voices["random"]
    voice_kv, voice_len = flowlm.voice_cache(voice_state, SMALL.cache_size)
    tokens = torch.tensor([[5, 17, 300, 42, 9, 77]])
    text = tts.flow_lm.conditioner(tokens).detach().numpy()
    chunk = small_components["flowlm"]["prefill"].examples[0]["cond"].shape[1]
    block = np.zeros((1, chunk, text.shape[2]), np.float32)
    block[:, : text.shape[1]] = text
    ours = _prefill(small_components, block, voice_kv, voice_len, text.shape[1])  # the run loop's order

    import copy

    state = copy.deepcopy(voice_state)
    tts._expand_kv_cache(state, voice_len + text.shape[1])
    with torch.no_grad():
        tts._run_flow_lm_and_increment_step(model_state=state, text_tokens=tokens)  # upstream: voice, then text
    want, _ = flowlm.voice_cache(state, SMALL.cache_size)
    end = voice_len + text.shape[1]
    assert max_diff(ours[:, :, :end], want[:, :, :end]) <= 1e-4

    # negative control: text first, then the voice prompt
    prompt = small_ref.voice_prompts["random"].detach().numpy()
    kv = _prefill(small_components, block, np.zeros_like(voice_kv), 0, text.shape[1])
    pos = text.shape[1]
    for start in range(0, prompt.shape[1], chunk):
        rows = prompt[:, start : start + chunk]
        cond = np.zeros_like(block)
        cond[:, : rows.shape[1]] = rows
        kv = _prefill(small_components, cond, kv, pos, rows.shape[1])
        pos += rows.shape[1]
    assert max_diff(kv[:, :, :end], want[:, :, :end]) > 1e-2


def test_flow_decode_times_are_i_over_n_and_next(small_ref):
    """Trial 7: s was fixed at 0 and t lagged by one step; only several decode steps expose it."""
    flow = small_ref.tts.flow_lm
    step = flowlm.Step(flow, SMALL.cache_size, decode_steps=4).eval()
    rng = np.random.default_rng(2)
    voice_kv, voice_len = flowlm.voice_cache(small_ref.voices["random"], SMALL.cache_size)
    inputs = {
        "latent": rng.standard_normal((1, 32)).astype(np.float32),
        "noise": rng.standard_normal((1, 32)).astype(np.float32),
        "kv": voice_kv,
        "pos": np.array([voice_len], np.int32),
    }
    with torch.no_grad():
        ours = step(*(torch.from_numpy(v) for v in inputs.values()))
    want = upstream.upstream_step(small_ref.tts, 4, **inputs)
    assert max_diff(ours[0], want["latent_out"]) <= 1e-4
    # negative control: the seed's wrong times (s = 0, t = i/N) give another latent
    with torch.no_grad():
        seq = torch.from_numpy(inputs["latent"]).view(1, 1, -1)
        state, _ = upstream._flow_state(small_ref.tts, inputs["kv"], voice_len, voice_len + 1)
        h = flow.backbone(flow.input_linear(seq), torch.empty((1, 0, flow.dim)), seq, model_state=state)[:, -1]
        x = torch.from_numpy(inputs["noise"])
        for i in range(4):
            zero, t = torch.zeros_like(x[..., :1]), torch.full_like(x[..., :1], i / 4)
            x = x + partial(flow.flow_net, h)(zero, t, x) / 4
    assert max_diff(x, want["latent_out"]) > 1e-3


def test_prefill_and_step_share_one_attention(small_components):
    """Trials 9-10: a separately written prefill attention diverged from the step's."""
    prefill = small_components["flowlm"]["prefill"]
    step = small_components["flowlm"]["step"]
    assert step.module.transformer is prefill.module.transformer
    ex = step.examples[1]
    pos = int(ex["pos"][0])
    kv_step = flowlm.write_rows(ex["kv"], step.run(ex)["kv_new"], pos, 1)
    with torch.no_grad():
        x = step.module.input_linear(torch.from_numpy(ex["latent"]).view(1, 1, -1)).numpy()
    chunk = prefill.examples[0]["cond"].shape[1]
    cond = np.zeros((1, chunk, x.shape[2]), np.float32)
    cond[:, :1] = x
    kv_prefill = _prefill(small_components, cond, ex["kv"], pos, 1)
    assert max_diff(kv_step, kv_prefill) <= 1e-5
    # token-by-token prefill equals a chunked prefill
    rng = np.random.default_rng(3)
    tokens = rng.standard_normal((1, chunk, x.shape[2])).astype(np.float32)
    chunked = _prefill(small_components, tokens, ex["kv"], pos, 7)
    kv = ex["kv"]
    for i in range(7):
        single = np.zeros_like(tokens)
        single[:, 0] = tokens[:, i]
        kv = _prefill(small_components, single, kv, pos + i, 1)
    assert max_diff(kv, chunked) <= 1e-4


def _traced_and_eager(traceable, inputs):
    """Outputs of the module traced as for conversion (every slot, masked) and run eagerly."""
    args = [torch.from_numpy(np.ascontiguousarray(inputs[s.name])) for s in traceable.inputs]
    with torch.no_grad():
        traced = torch.jit.trace(traceable.module, args, check_trace=False)
        return [t.numpy() for t in traced(*args)], [t.numpy() for t in traceable.module(*args)]


def test_eager_attention_reads_the_filled_slots_only_and_equals_the_traced_graph(small_components):
    """The torch backend attends to the ``pos`` filled slots (a view, as upstream's cache); the
    traced graph, which CoreML gets, reads all S slots under a mask. Both compute the same."""
    step, prefill = small_components["flowlm"]["step"], small_components["flowlm"]["prefill"]
    rng = np.random.default_rng(5)
    cases = [(step, {**step.examples[1]}), (prefill, {**prefill.examples[1], "valid": np.array([5], np.int32)})]
    for pos in (0, 37):
        cases.append((step, {**step.examples[1], "pos": np.array([pos], np.int32)}))
    for traceable, inputs in cases:
        pos = int(inputs["pos"][0])
        kv = np.zeros_like(inputs["kv"])
        kv[:, :, :pos] = rng.standard_normal(kv[:, :, :pos].shape)
        traced, eager = _traced_and_eager(traceable, {**inputs, "kv": kv})
        for t, e in zip(traced, eager):
            # measured: at most 6.6e-7 of the output's scale (float32 summation order); 1e-5 is 15x that
            assert max_diff(t, e) <= 1e-5 * max(1.0, float(np.max(np.abs(t))))
        # slots at and after pos are never read eagerly: NaN there changes nothing ...
        poisoned = kv.copy()
        poisoned[:, :, pos:] = np.nan
        traced_nan, eager_nan = _traced_and_eager(traceable, {**inputs, "kv": poisoned})
        for a, b in zip(eager_nan, eager):
            assert np.array_equal(a, b)
        # ... while the graph reads every slot (0 x NaN under its mask): the check above can fail
        assert not all(np.isfinite(o).all() for o in traced_nan)
