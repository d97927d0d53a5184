"""VibeVoice voice presets are read without executing their pickles."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from zoo.plugins.vibevoice import presets  # noqa: E402


class DynamicCache:  # pickled under transformers' name, like the presets' (transformers 4.x layout)
    pass


DynamicCache.__module__, DynamicCache.__qualname__ = "transformers.cache_utils", "DynamicCache"


class BaseModelOutputWithPast(dict):
    def __init__(self, *fields):
        super().__init__(zip(presets.OUTPUT_FIELDS, fields))

    def __reduce__(self):  # as transformers' ModelOutput: cls(*fields)
        return (type(self), tuple(self[f] for f in presets.OUTPUT_FIELDS))


BaseModelOutputWithPast.__module__, BaseModelOutputWithPast.__qualname__ = (
    "transformers.modeling_outputs",
    "BaseModelOutputWithPast",
)


def _fake_preset(path, layers=(4, 20), tokens=(7, 11)):
    gen = torch.Generator().manual_seed(0)
    data = {}
    for part, n_layers, n in (
        ("lm", layers[0], tokens[0]),
        ("tts_lm", layers[1], tokens[1]),
        ("neg_lm", layers[0], 1),
        ("neg_tts_lm", layers[1], 1),
    ):
        cache = DynamicCache()
        cache._seen_tokens = n
        cache.key_cache = [torch.randn(1, 2, n, 8, generator=gen).to(torch.bfloat16) for _ in range(n_layers)]
        cache.value_cache = [torch.randn(1, 2, n, 8, generator=gen).to(torch.bfloat16) for _ in range(n_layers)]
        data[part] = BaseModelOutputWithPast(torch.randn(1, n, 16, generator=gen).to(torch.bfloat16), cache, None, None)
    import sys
    import types
    from unittest import mock

    # pickle saves classes by module and name: make the stand-ins importable under transformers' names
    modules = {}
    for cls in (DynamicCache, BaseModelOutputWithPast):
        modules[cls.__module__] = types.ModuleType(cls.__module__)
        setattr(modules[cls.__module__], cls.__qualname__, cls)
    with mock.patch.dict(sys.modules, modules):
        torch.save(data, path)
    return data


def test_preset_loads_as_arrays(tmp_path):
    data = _fake_preset(tmp_path / "voice.pt")
    got = presets.load(tmp_path / "voice.pt")
    assert set(got) == set(presets.PARTS)
    assert got["lm"]["k"].shape == (4, 2, 7, 8) and got["tts_lm"]["v"].shape == (20, 2, 11, 8)
    assert got["neg_tts_lm"]["hidden"].shape == (1, 1, 16)
    want = torch.cat(data["tts_lm"]["past_key_values"].key_cache).float().numpy()
    assert np.array_equal(got["tts_lm"]["k"], want)


def test_preset_with_other_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pt"
    torch.save({"lm": Evil()}, path)
    from zoo.core.kit.weights import WeightsError

    with pytest.raises(WeightsError, match=r"evil\.pt is not a readable VibeVoice preset \(UnpicklingError\)") as err:
        presets.load(path)
    assert "weights_only=False" not in str(err.value)
