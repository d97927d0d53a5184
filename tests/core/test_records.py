"""Typed records (zoo.core.Record): what a plugin writes and reads back is checked key by key."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from zoo.core import Record, RecordError


@dataclass(frozen=True)
class Config(Record):
    rate: int
    gain: float
    names: tuple[str, ...]
    voice: str | None = None


def test_round_trip_keeps_types(tmp_path):
    config = Config(24000, 0.5, ("a", "b"))
    assert Config.load(config.save(tmp_path / "c.json")) == config  # a tuple comes back a tuple


@pytest.mark.parametrize(
    "data, message",
    [
        ({"rate": 24000, "gain": 0.5}, "lacks the key 'names'"),
        ({"rate": "24000", "gain": 0.5, "names": []}, "'rate' must be an integer"),
        ({"rate": True, "gain": 0.5, "names": []}, "'rate' must be an integer"),
        ({"rate": 24000, "gain": "loud", "names": []}, "'gain' must be a number"),
        ({"rate": 24000, "gain": 0.5, "names": ["a", 3]}, r"'names'\[1\] must be a str"),
        ({"rate": 24000, "gain": 0.5, "names": [], "extra": 1}, "unknown Config key"),
        ({"rate": 24000, "gain": 0.5, "names": [], "voice": 5}, "'voice' must be a str"),
    ],
)
def test_a_record_read_back_names_the_file_and_the_key(tmp_path, data, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=message) as err:
        Config.load(path)
    assert str(path) in str(err.value)


def test_unreadable_json_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(RecordError, match="config.json: not a readable JSON file"):
        Config.load(path)


def test_built_in_variant_options_parse_into_their_records():
    """Every variant every built-in plugin declares parses into the plugin's options record, and a
    misspelt option is refused naming the variant."""
    from zoo.core.host.plugins import PluginHost
    from zoo.core.plugin.spec import Variant

    host = PluginHost()
    for name in ("pocket_tts", "kokoro", "vibevoice", "qwen3_speaker"):
        plugin = host.implementation(host.model(name))
        for variant in host.model(name).variants.values():
            assert isinstance(plugin.options(variant), plugin.options_type)
        bad = Variant("bad", "fp32", "iOS17", {"size": "small", "bukets": [1]})
        with pytest.raises(RecordError, match="variant 'bad' options: unknown"):
            plugin.options(bad)
