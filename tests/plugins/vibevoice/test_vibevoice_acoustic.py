"""VibeVoice streaming acoustic decoder (explicit caches) against transformers' decoder."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from helpers import upstream_decoder_name  # noqa: E402

from zoo.plugins.vibevoice.acoustic import StreamingDecoder, decoder_config, decoder_state_from_upstream  # noqa: E402


def _decoder(seed=0):
    from transformers.models.vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer import (
        VibeVoiceAcousticTokenizerDecoderModel,
    )

    torch.manual_seed(seed)
    dec = VibeVoiceAcousticTokenizerDecoderModel(decoder_config(filters=4, depths=(1, 1, 1, 1, 1, 1, 2))).eval()
    with torch.no_grad():
        for name, p in dec.named_parameters():
            if "gamma" in name:  # layer scales start at 1e-6: the blocks would be identities
                p.copy_(0.5 + 0.1 * torch.randn_like(p))
    return dec


def test_latent_by_latent_matches_transformers_streaming_and_whole_decoding():
    from transformers.models.vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer import (
        VibeVoiceAcousticTokenizerConv1dPaddingCache,
    )

    dec = _decoder()
    stream = StreamingDecoder(dec).eval()
    caches = [torch.zeros(shape) for shape in stream.cache_shapes()]
    padding = VibeVoiceAcousticTokenizerConv1dPaddingCache()
    latents = torch.randn(1, 64, 6, generator=torch.Generator().manual_seed(1))
    ours = []
    with torch.no_grad():
        whole = dec(latents).audio
        for i in range(latents.shape[-1]):
            want = dec(latents[..., i : i + 1], padding_cache=padding, use_cache=True).audio
            got, *caches = stream(latents[..., i : i + 1], *caches)
            assert got.shape == want.shape == (1, 1, 3200)
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
            ours.append(got)
    joined = torch.cat(ours, dim=-1)
    assert float((joined - whole).abs().max()) <= 1e-5 * float(whole.abs().max())  # causal: streaming == whole


def test_checkpoint_names_map_onto_the_transformers_decoder():
    dec = _decoder()
    upstream = {"model.acoustic_tokenizer.decoder." + upstream_decoder_name(k): v for k, v in dec.state_dict().items()}
    upstream["model.acoustic_tokenizer.encoder.stem.whatever"] = torch.zeros(1)  # not the decoder's
    mapped = decoder_state_from_upstream(upstream)
    assert set(mapped) == set(dec.state_dict())
    _decoder(seed=3).load_state_dict(mapped, strict=True)


@pytest.mark.slow
def test_converted_streaming_decoder_executes_like_torch(tmp_path):
    from zoo.core.host.defaults import save_component
    from zoo.core.mil import MilProgram
    from zoo.core.plugin.spec import Variant
    from zoo.core.plugin.traceable import TensorSpec, Traceable

    stream = StreamingDecoder(_decoder()).eval()
    shapes = stream.cache_shapes()
    names = [f"cache{i}" for i in range(len(shapes))]
    rng = np.random.default_rng(2)
    example = {"latent": rng.standard_normal((1, 64, 1)).astype(np.float32)}
    example.update({n: (0.1 * rng.standard_normal(s)).astype(np.float32) for n, s in zip(names, shapes)})
    traceable = Traceable(
        stream,
        [TensorSpec("latent", (1, 64, 1))] + [TensorSpec(n, s) for n, s in zip(names, shapes)],
        ["audio"] + [f"new_{n}" for n in names],
        [example],
    )
    package = save_component({"main": traceable}, Variant("v", "fp32"), tmp_path / "decoder.mlpackage")
    got = MilProgram.load(package).run(example)
    want = traceable.run(example)
    for name, value in want.items():
        assert np.abs(got[name] - value).max() <= 1e-4 * max(np.abs(value).max(), 1e-6), name
