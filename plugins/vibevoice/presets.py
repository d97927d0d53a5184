"""VibeVoice voice presets (``voices/streaming_model/*.pt``) read without running their pickles.

A preset is a ``torch.save`` of four prefilled model outputs — ``lm``, ``tts_lm``,
``neg_lm``, ``neg_tts_lm`` — each a transformers ``BaseModelOutputWithPast`` holding the
last hidden state and a ``DynamicCache`` (per-layer keys after RoPE and values, bf16).
``torch.load(weights_only=True)`` refuses those classes, and allowing the real ones would
hand the file's state to transformers code. Instead, in the weights-only unpickler's
allow-list, the output class name is bound to :func:`output_fields` (it pickles as
``cls(*fields)``; this returns an ``OrderedDict`` of them) and the cache class name to
:class:`Record`, a plain attribute bag: nothing but tensors, containers and attribute
dicts is ever built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PARTS = ("lm", "tts_lm", "neg_lm", "neg_tts_lm")
CACHE_CLASS = "transformers.cache_utils.DynamicCache"
OUTPUT_CLASS = "transformers.modeling_outputs.BaseModelOutputWithPast"


class Record:
    """Stands in for the pickled classes: keeps whatever state they carried, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for arg in args:  # ModelOutput pickles as cls(dict-of-fields)
            if isinstance(arg, dict):
                self.__dict__.update(arg)
        self.__dict__.update(kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state)

    def __setitem__(self, key: str, value: Any) -> None:  # OrderedDict-style outputs
        self.__dict__[key] = value


#: BaseModelOutputWithPast's dataclass fields, in order
OUTPUT_FIELDS = ("last_hidden_state", "past_key_values", "hidden_states", "attentions")


def output_fields(*fields: Any) -> Any:
    from collections import OrderedDict

    return OrderedDict(zip(OUTPUT_FIELDS, fields))


def _layers(cache: Any) -> tuple[list[Any], list[Any]]:
    """Per-layer keys and values of a pickled DynamicCache (transformers 4.x ``key_cache``/``value_cache``)."""
    state = vars(cache)
    if "key_cache" in state:
        return list(state["key_cache"]), list(state["value_cache"])
    raise ValueError(f"unknown cache layout with fields {sorted(state)}")


def load(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """{part: {"hidden": [1, T, C], "k": [layers, kv_heads, T, D], "v": ...}} as float32 arrays."""
    import torch

    from ...core.kit.weights import WeightsError

    try:
        with torch.serialization.safe_globals([(Record, CACHE_CLASS), (output_fields, OUTPUT_CLASS)]):
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's message advises unsafe loading: not repeated
        raise WeightsError(
            f"voice preset {path} is not a readable VibeVoice preset ({type(exc).__name__}); zoo loads presets with "
            "weights_only=True, allowing only the cache classes they are made of"
        ) from None
    out: dict[str, dict[str, np.ndarray]] = {}
    for part in PARTS:
        if part not in raw:
            raise ValueError(f"{path}: no {part!r} in the preset (has {sorted(raw)})")
        record = dict(raw[part])
        keys, values = _layers(record["past_key_values"])
        out[part] = {
            "hidden": record["last_hidden_state"].float().numpy(),
            "k": torch.cat([k.float() for k in keys], dim=0).numpy(),  # each [1, kv, T, D]
            "v": torch.cat([v.float() for v in values], dim=0).numpy(),
        }
    return out
