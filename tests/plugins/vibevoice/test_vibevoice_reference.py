"""VibeVoice reference: the released checkpoint's names load strictly (a checkpoint written from a
random model under upstream's names), and the generate loop is deterministic given the noise."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from helpers import upstream_decoder_name  # noqa: E402

from zoo.core import WeightsSource  # noqa: E402
from zoo.plugins.vibevoice import reference  # noqa: E402
from zoo.plugins.vibevoice.diffusion import HEAD_KEYS  # noqa: E402
from zoo.plugins.vibevoice.options import FULL, SMALL  # noqa: E402


def _upstream_names(model):
    """The random model's weights under the names of microsoft/VibeVoice-Realtime-0.5B's checkpoint."""
    state = {}
    for prefix, module in (
        ("model.language_model.", model.lm),
        ("model.tts_language_model.", model.tts_lm),
        ("model.tts_input_types.", model.tts_input_types),
        ("model.acoustic_connector.", model.connector),
        ("tts_eos_classifier.", model.eos),
    ):
        state.update({prefix + k: v for k, v in module.state_dict().items()})
    for key, value in model.head.state_dict().items():
        for old, new in HEAD_KEYS:
            if new in key:
                key = key.replace(new, old)
                break
        state["model.prediction_head." + key] = value
    state.update(
        {
            "model.acoustic_tokenizer.decoder." + upstream_decoder_name(k): v
            for k, v in model.decoder.state_dict().items()
        }
    )
    state["model.speech_scaling_factor"] = torch.tensor(model.scaling)
    state["model.speech_bias_factor"] = torch.tensor(model.bias)
    return {k: v.contiguous() for k, v in state.items()}


def test_checkpoint_directory_loads_strictly(tmp_path):
    from safetensors.torch import save_file
    from test_vibevoice_presets import _fake_preset
    from tokenizers import Tokenizer, models

    small = reference.load(WeightsSource.random(0), SMALL).model
    cfg = small.cfg
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "decoder_config": {**cfg["decoder"], "model_type": "qwen2"},
                "tts_backbone_num_hidden_layers": cfg["tts_layers"],
                "diffusion_head_config": {
                    "head_layers": cfg["head_layers"],
                    "hidden_size": cfg["decoder"]["hidden_size"],
                },
                "acoustic_tokenizer_config": {
                    "encoder_n_filters": cfg["acoustic"]["filters"],
                    "encoder_depths": "-".join(map(str, cfg["acoustic"]["depths"])),
                },
            }
        )
    )
    save_file(_upstream_names(small), str(tmp_path / "model.safetensors"))
    (tmp_path / "voices").mkdir()
    _fake_preset(tmp_path / "voices" / "en-Test_man.pt")
    Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]")).save(str(tmp_path / "tokenizer.json"))

    loaded = reference.load(WeightsSource.local(tmp_path), FULL)
    model = loaded.model
    for name in ("lm", "tts_lm", "tts_input_types", "connector", "head", "decoder", "eos"):
        want, got = getattr(small, name).state_dict(), getattr(model, name).state_dict()
        assert set(want) == set(got) and all(torch.equal(want[k], got[k]) for k in want), name
    assert (model.scaling, model.bias) == pytest.approx((small.scaling, small.bias), rel=1e-6)
    assert set(model.presets) == {"en-Test_man"} and model.tokenizer_file.name == "tokenizer.json"
    assert {"config.json", "model.safetensors", "voices/en-Test_man.pt", "tokenizer.json"} <= set(loaded.files)


def test_directory_without_voices_is_refused_with_a_hint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="demo/voices/streaming_model"):
        reference.load(WeightsSource.local(tmp_path), FULL)


def test_random_weights_exercise_every_path():
    model = reference.load(WeightsSource.random(0), SMALL).model
    assert np.isfinite([model.scaling, model.bias]).all()  # upstream leaves them NaN until trained
    assert all(float(p.abs().max()) > 0 for p in model.head.parameters())  # upstream zero-initialises parts
    gen = torch.Generator().manual_seed(0)
    noises = [torch.randn(1, 64, generator=gen) for _ in range(8)]
    runs = [
        reference.generate(model, [5, 6, 7, 8, 9, 10, 11], model.presets["random"], lambda i: noises[i], max_latents=8)
        for _ in range(2)
    ]
    assert runs[0]["latents"] == 8 and np.array_equal(runs[0]["audio"], runs[1]["audio"])
    assert runs[0]["audio"].shape == (8 * 3200,) and float(np.abs(runs[0]["audio"]).max()) > 1e-2


def test_a_model_built_without_initialisers_then_randomised_equals_one_built_with_them():
    """build() skips torch's and transformers' weight initialisers (8 of 12 s at full size): sound only
    if every parameter is written afterwards and no buffer depends on them."""
    cfg = reference.sizes("small")
    fast = reference.build(cfg)
    torch.manual_seed(0)
    slow = reference._build(cfg)  # initialised as the constructors do
    for model in (fast, slow):
        reference.randomise(model, 3)
    for part in ("lm", "tts_lm", "tts_input_types", "connector", "head", "decoder", "eos"):
        a, b = getattr(fast, part), getattr(slow, part)
        tensors = lambda m: {**dict(m.named_parameters()), **dict(m.named_buffers())}  # noqa: E731
        assert sorted(tensors(a)) == sorted(tensors(b)), part
        for name, value in tensors(a).items():
            assert torch.equal(value, tensors(b)[name]), f"{part}.{name}"
