"""Bad weights name the file and what is wrong (core/kit/weights.py), never a library's traceback or
its advice to unpickle; the CLI says it once, as a failure."""

from __future__ import annotations

import json
import pickle

import pytest
from conftest import Zoo

from zoo.core.kit.weights import WeightsError, load_safetensors, load_tokenizer, load_torch, read_json


def test_corrupt_config_json_names_the_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "dim": 3,,\n}')
    with pytest.raises(WeightsError, match=r"config\.json is not valid JSON: .* at line 2"):
        read_json(path)


def test_a_pickle_is_refused_without_advice_to_unpickle(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "model.pth"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(WeightsError) as err:
        load_torch(path)
    message = str(err.value)
    assert "model.pth" in message and "holds objects other than tensors" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message


def test_garbage_checkpoint_and_safetensors_and_tokenizer_are_named(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\xff" * 64)
    with pytest.raises(WeightsError, match=r"x\.bin is not a readable file of PyTorch tensors"):
        load_torch(bad)
    with pytest.raises(WeightsError, match=r"x\.bin is not a readable safetensors file: .*header too large"):
        load_safetensors(bad)
    tok = tmp_path / "tokenizer.json"
    tok.write_text(json.dumps({"model": {}}))
    with pytest.raises(WeightsError, match=r"tokenizer\.json is not a readable tokenizer\.json"):
        load_tokenizer(tok)
    with pytest.raises(WeightsError, match="does not exist"):
        load_safetensors(tmp_path / "missing.safetensors")


def test_zoo_export_with_a_corrupt_kokoro_config_says_which_file(zoo: Zoo, tmp_path):
    pytest.importorskip("kokoro")
    weights = tmp_path / "Kokoro-82M"
    weights.mkdir()
    (weights / "config.json").write_text('{"istftnet": {},\n "vocab": }')
    (weights / "kokoro-v1_0.pth").write_bytes(b"\x00" * 16)
    proc = zoo("export", "kokoro", "--weights", str(weights), "--out", str(zoo.out))
    text = " ".join(proc.stderr.split()) + " ".join(proc.stdout.split())
    assert proc.returncode == 1 and "config.json is not valid JSON" in text and "line 2" in text
    assert "Traceback" not in proc.stderr
    (weights / "config.json").write_text(json.dumps({"istftnet": {}, "vocab": {}}))
    proc = zoo("export", "kokoro", "--weights", str(weights), "--out", str(zoo.out))
    text = " ".join(proc.stderr.split()) + " ".join(proc.stdout.split())
    assert proc.returncode == 1 and "kokoro-v1_0.pth is not a readable file of PyTorch tensors" in text
    assert "weights_only=False" not in text and "Traceback" not in proc.stderr


def test_an_unreachable_hub_is_said_once_with_the_ways_around_it(zoo: Zoo):
    pytest.importorskip("kokoro")
    zoo.env["HF_HUB_OFFLINE"] = "1"  # what a machine without network sees, without waiting for it
    zoo.env["HF_HOME"] = str(zoo.workdir / "hf")  # an empty hub cache
    proc = zoo("export", "kokoro", "--out", str(zoo.out))
    text = " ".join((proc.stderr + proc.stdout).split())
    assert proc.returncode == 1 and text.count("cannot fetch hexgrad/Kokoro-82M") == 1, text
    assert "--weights DIR" in text and "--random-weights" in text and "Traceback" not in proc.stderr
