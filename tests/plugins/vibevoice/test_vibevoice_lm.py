"""VibeVoice language models in the Neural Engine layout (zoo.core.kit.ane) against transformers' Qwen2Model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from zoo.plugins.vibevoice.config import qwen2_config, small_decoder  # noqa: E402
from zoo.plugins.vibevoice.lm import from_qwen2  # noqa: E402

CHUNK, CAPACITY = 8, 64


def _qwen(layers, final_norm, seed=0):
    torch.manual_seed(seed)
    cfg = small_decoder()
    qwen = transformers.Qwen2Model(qwen2_config(cfg, layers)).eval()
    with torch.no_grad():
        for p in qwen.parameters():
            p.add_(0.05 * torch.randn_like(p))  # norms and biases away from their initial values
    if not final_norm:
        qwen.norm = torch.nn.Identity()  # the lm: upstream replaces the final norm by identity
    return cfg, qwen


def _chunks(qwen, cfg, sizes, embed, seed=1):
    """Per chunk: the ANE module's inputs and transformers' hidden states with a DynamicCache.
    ``embed``: the inputs are rows of the token table (the lm's, looked up by the host), else any
    embeddings (the tts_lm's)."""
    gen = torch.Generator().manual_seed(seed)
    cache, pos, out = transformers.DynamicCache(), 0, []
    for n in sizes:
        ids = torch.randint(0, cfg["vocab_size"], (1, n), generator=gen)
        with torch.no_grad():
            embeds = qwen.embed_tokens(ids) if embed else torch.randn(1, n, cfg["hidden_size"], generator=gen)
            if n:
                want = qwen(
                    inputs_embeds=embeds,
                    past_key_values=cache,
                    use_cache=True,
                    position_ids=torch.arange(pos, pos + n)[None],
                ).last_hidden_state
            else:  # nothing for this sequence in this chunk
                want = torch.zeros(1, 0, cfg["hidden_size"])
        x = np.zeros((1, cfg["hidden_size"], 1, CHUNK), np.float32)
        x[0, :, 0, :n] = embeds[0].T.numpy()
        inputs = {"inputs": x, "position": np.array([pos], np.int32), "valid": np.array([n], np.int32)}
        out.append((inputs, want[0].numpy(), n))
        pos += n
    return out


@pytest.mark.parametrize("embed,final_norm", [(True, False), (False, True)], ids=["lm", "tts_lm"])
def test_ane_layout_matches_qwen2_chunk_by_chunk(embed, final_norm):
    """Chunks of 8, 3 (padded: 5 rows that must not touch the cache) and 8 positions."""
    cfg, qwen = _qwen(3, final_norm)
    ane = from_qwen2(qwen, cfg, CHUNK, CAPACITY, final_norm=final_norm)
    for inputs, want, n in _chunks(qwen, cfg, (8, 3, 8), embed):
        with torch.no_grad():
            got = ane(*(torch.from_numpy(v) for v in inputs.values()))[0, :, 0, :n].T.numpy()
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    written = ane.layers[0].self_attn.cache.k[0, 0].abs().sum(dim=-1)
    assert bool((written[:19] > 0).all()) and not bool(written[19:].any())  # padding rows wrote nothing


def test_two_paths_in_one_batch_keep_separate_caches():
    """The tts_lm layout: positive and negative paths as a batch of 2, each with its own cache and
    position; a chunk where one path has valid = 0 leaves that path's cache untouched."""
    cfg, qwen = _qwen(2, final_norm=True)
    ane = from_qwen2(qwen, cfg, CHUNK, CAPACITY, final_norm=True, batch=2)
    paths = [_chunks(qwen, cfg, sizes, embed=False, seed=seed) for sizes, seed in (((8, 5, 1), 1), ((2, 0, 1), 2))]
    for (a, want_a, na), (b, want_b, nb) in zip(*paths):
        inputs = {k: np.concatenate([a[k], b[k]]) for k in a}
        with torch.no_grad():
            got = ane(*(torch.from_numpy(v) for v in inputs.values())).numpy()
        assert np.abs(got[0, :, 0, :na].T - want_a).max() <= 1e-5 * max(1.0, np.abs(want_a).max())
        assert np.abs(got[1, :, 0, :nb].T - want_b).max() <= 1e-5 * max(1.0, np.abs(want_b).max()) if nb else True
    filled = ane.layers[1].self_attn.cache.v.abs().sum(dim=(1, 3))
    assert int((filled[0] > 0).sum()) == 14 and int((filled[1] > 0).sum()) == 3


def test_rmsnorm_as_layernorm_of_x_and_minus_x():
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

    from zoo.core.kit.ane import ChannelRMSNorm

    ref = Qwen2RMSNorm(64, eps=1e-6)
    ours = ChannelRMSNorm(64, eps=1e-6)
    with torch.no_grad():
        ref.weight.copy_(torch.rand(64) + 0.5)
        ours.weight.copy_(ref.weight)
        x = torch.randn(1, 5, 64) * torch.tensor([1.0, 1e-3, 1e3, 3.0, 0.0]).view(1, 5, 1)
        want = ref(x)
        got = ours(x.transpose(1, 2).unsqueeze(2))[0, :, 0].T
    assert torch.allclose(got, want[0], rtol=1e-5, atol=1e-6)


def test_weights_that_do_not_map_are_refused():
    cfg, qwen = _qwen(2, final_norm=True)
    qwen.layers[1].self_attn.q_proj = torch.nn.Linear(
        cfg["hidden_size"], cfg["hidden_size"], bias=False
    )  # not Qwen2's layout
    with pytest.raises(ValueError, match=r"missing \['layers.1.self_attn.q_proj.bias'\]"):
        from_qwen2(qwen, cfg, CHUNK, CAPACITY, final_norm=True)


@pytest.mark.slow
def test_converted_lm_keeps_its_cache_in_coreml_states(tmp_path):
    """Converted for iOS18 with the KV cache as states (CoreML states are fp16 only, so the cache
    is fp16 in the torch module too) and executed by the MIL interpreter chunk after chunk on one
    state: the torch module's hidden states, and transformers' within the cache's fp16 rounding."""
    import copy

    from zoo.core.host.defaults import save_component
    from zoo.core.mil import MilProgram
    from zoo.core.plugin.spec import Variant
    from zoo.core.plugin.traceable import StateSpec, TensorSpec, Traceable

    cfg, qwen = _qwen(2, final_norm=False)
    ane = from_qwen2(qwen, cfg, CHUNK, CAPACITY, final_norm=False, cache_dtype=torch.float16)
    cases = _chunks(qwen, cfg, (8, 3, 8), embed=True)
    states = [StateSpec(name, tuple(ane.get_buffer(name).shape), "float16") for name in ane.state_names()]
    traceable = Traceable(
        copy.deepcopy(ane),
        [
            TensorSpec("inputs", (1, cfg["hidden_size"], 1, CHUNK)),
            TensorSpec("position", (1,), "int32"),
            TensorSpec("valid", (1,), "int32"),
        ],
        ["hidden"],
        [cases[0][0]],
        states=states,
    )
    package = save_component({"main": traceable}, Variant("v", "fp32", "iOS18"), tmp_path / "lm.mlpackage")
    program = MilProgram.load(package)
    assert len(program.function().states) == len(states) == 4
    assert program.function().op_types()["coreml_update_state"] == 2 * len(states)  # mul_ then add_ per buffer
    # grouped query heads (2 per key/value head here) read the cache where it lies: no op repeats it
    assert "tile" not in program.function().op_types()
    state = program.make_state()
    for inputs, want, n in cases:
        got = program.run(inputs, state=state)["hidden"][0, :, 0, :n].T
        with torch.no_grad():
            mine = ane(*(torch.from_numpy(v) for v in inputs.values()))[0, :, 0, :n].T.numpy()
        scale = max(1.0, np.abs(want).max())
        assert np.abs(got - mine).max() <= 1e-4 * scale  # the package computes what the module computes
        assert np.abs(mine - want).max() <= 1e-2 * scale  # fp16 keys/values vs transformers' fp32 cache


def test_the_layout_holds_upstreams_weights_and_keeps_them_through_a_float64_run():
    """No second copy of the weights: every weight of the ANE module is a view of upstream's tensor
    (1.9 GB at full size otherwise), and a per-call float64 run of the port puts them back shared."""
    from zoo.core.kit.float64 import as_float64

    cfg, qwen = _qwen(2, final_norm=False)
    ane = from_qwen2(qwen, cfg, CHUNK, CAPACITY, final_norm=False)
    upstream = {t.untyped_storage().data_ptr() for t in qwen.state_dict().values()}

    def shared():
        return {n: p.untyped_storage().data_ptr() in upstream for n, p in ane.named_parameters()}

    assert all(shared().values()), shared()
    assert not ane.layers[0].self_attn.cache.k.any() and ane.rope_cos.abs().sum() > 0  # buffers made for real
    inputs, want, n = _chunks(qwen, cfg, (8,), embed=True)[0]
    with as_float64(ane, per_call=True), torch.no_grad():
        assert ane.layers[0].mlp.up_proj.weight.dtype == torch.float32  # not running: not widened
        got = ane(*(torch.from_numpy(v) for v in inputs.values()))[0, :, 0, :n].T.numpy()
    assert got.dtype == np.float64 and np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    assert all(shared().values()) and all(p.dtype == torch.float32 for p in ane.parameters())
