"""registry.toml: atomic appends under a lock, refusal of broken files, hashes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import tomlkit

from zoo.core.registry.store import Registry, RegistryError, new_document
from zoo.core.util.hashing import tree_sha256, tree_size

ROOT = Path(__file__).resolve().parents[2]


def _entry(i: int) -> dict:
    return {
        "id": f"m-{i}",
        "model": "m",
        "status": "valid",
        "created_at": f"2026-01-01T00:00:{i:02d}+00:00",
        "path": f"exports/m-{i}",
        "variant": {"name": "fp32"},
        "components": [{"name": "c", "path": "c.mlpackage", "sha256": "0" * 64}],
    }


def test_committed_registry_is_the_documented_empty_schema():
    text = (ROOT / "registry.toml").read_text()
    assert text == tomlkit.dumps(new_document())
    doc = Registry(ROOT / "registry.toml").read()
    assert doc["schema"] == 1 and "exports" not in doc
    for field in ("sha256", "validation_level", "weights", "tools", "threshold", "skipped"):
        assert field in text


def test_add_round_trips_and_keeps_comments(tmp_path):
    reg = Registry(tmp_path / "registry.toml")
    reg.add(_entry(1))
    reg.add(_entry(2))
    assert [e.id for e in reg.exports()] == ["m-1", "m-2"]
    assert reg.path.read_text().startswith("# zoo registry")
    assert reg.latest_valid("m").id == "m-2"
    with pytest.raises(RegistryError, match="already exists"):
        reg.add(_entry(1))


def test_unparsable_registry_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "registry.toml"
    broken = "schema = 1\n[[exports]\nid = 'x'\n"
    path.write_text(broken)
    reg = Registry(path)
    with pytest.raises(RegistryError, match="not valid TOML"):
        reg.add(_entry(1))
    assert path.read_text() == broken


def test_other_schema_is_refused(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text("schema = 99\n")
    with pytest.raises(RegistryError, match="schema 99"):
        Registry(path).exports()


def test_failed_write_leaves_previous_file(tmp_path):
    reg = Registry(tmp_path / "registry.toml")
    reg.add(_entry(1))
    before = reg.path.read_text()

    def explode():
        raise OSError("disk full")

    with pytest.raises(OSError):
        reg.add(_entry(2), before_write=explode)
    assert reg.path.read_text() == before
    assert not list(tmp_path.glob(".registry.toml.*.tmp"))


def _add_many(path: str, start: int) -> None:
    reg = Registry(path)
    for i in range(start, start + 5):
        reg.add(_entry(i))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "registry.toml")
    procs = [multiprocessing.get_context("spawn").Process(target=_add_many, args=(path, k * 5)) for k in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ids = sorted(e.id for e in Registry(path).exports())
    assert ids == sorted(f"m-{i}" for i in range(40))


def test_tree_hash_is_stable_and_sensitive(tmp_path):
    root = tmp_path / "pkg"
    (root / "Data" / "w").mkdir(parents=True)
    (root / "Manifest.json").write_text("{}")
    (root / "Data" / "w" / "weight.bin").write_bytes(bytes(range(256)))
    digest = tree_sha256(root)
    assert digest == tree_sha256(root) and tree_size(root) == 258
    blob = root / "Data" / "w" / "weight.bin"
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.write_bytes(bytes(data))
    assert tree_sha256(root) != digest
    data[100] ^= 1
    blob.write_bytes(bytes(data))
    assert tree_sha256(root) == digest
    blob.rename(root / "Data" / "w" / "weights.bin")
    assert tree_sha256(root) != digest


def test_spectral_distance_is_phase_blind_but_not_blind():
    import numpy as np

    from zoo.core.plugin.spec import Tolerance
    from zoo.core.validation.checks import judge
    from zoo.core.validation.metrics import compare

    t = np.arange(24000) / 24000
    tone = np.sin(2 * np.pi * 220 * t)
    shifted = np.sin(2 * np.pi * 220 * t + 1.0)  # same spectrum, different samples
    other = np.sin(2 * np.pi * 330 * t)
    same = compare(shifted, tone, spectral=True)
    assert same["max_abs"] > 0.5 and same["spectral"] < 0.01
    assert compare(other, tone, spectral=True)["spectral"] > 0.5
    (check,) = judge("reference", "c", [same], Tolerance(spectral_max=0.05))
    assert check.status == "passed" and check.metric == "spectral_max"
    (check,) = judge("reference", "c", [compare(other, tone, spectral=True)], Tolerance(spectral_max=0.05))
    assert check.status == "failed"


def test_tolerance_per_level():
    from zoo.core import ComponentSpec, ModelSpec, Tolerance, Variant

    spec = ModelSpec(
        "m",
        "s",
        {"v": Variant("v", "fp32")},
        "v",
        (ComponentSpec("c", tolerances={"fp32": Tolerance(rel=1e-3), "fp32@mil": Tolerance(spectral_max=0.1)}),),
        tolerances={"fp16@coreml": Tolerance(cosine_min=0.99)},
    )
    assert spec.tolerance("c", "fp32") == Tolerance(rel=1e-3)
    assert spec.tolerance("c", "fp32", "mil") == Tolerance(spectral_max=0.1)
    assert spec.tolerance("c", "fp32", "coreml") == Tolerance(rel=1e-3)  # falls back to the precision
    assert spec.tolerance("c", "fp16", "coreml") == Tolerance(cosine_min=0.99)  # the model's table
    assert spec.tolerance("c", "fp16", "mil") == Tolerance(cosine_min=0.999)  # the default
