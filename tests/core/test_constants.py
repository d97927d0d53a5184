"""Constants stored as look-up tables: the format (kit.constants), what a compressed variant writes and
the checks it records (compression.constants)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import count_clustering
from safetensors.numpy import load_file, save_file

from zoo.core.compression import constants as cc
from zoo.core.compression.modes import MIXED_TARGET_DB, PALETTE_FLOOR_DB
from zoo.core.kit import constants as kc


def _expected(lut, indices, shape, group_rows):
    """Element by element, as the format's docstring states it."""
    cols = shape[-1]
    out = np.empty(int(np.prod(shape)), lut.dtype)
    for e in range(out.size):
        out[e] = lut[(e // cols) // group_rows, indices[e]]
    return out.reshape(shape)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_a_palettized_tensor_reads_back_as_the_format_defines_it(tmp_path, dtype):
    rng = np.random.default_rng(0)
    group = 4
    for bits in range(1, 9):
        for shape in [(37, 5), (2, 3, 7), (16, 1)]:
            rows = int(np.prod(shape[:-1]))
            lut = rng.standard_normal((-(-rows // group), 1 << bits)).astype(dtype)
            indices = rng.integers(0, 1 << bits, int(np.prod(shape))).astype(np.uint8)
            path = tmp_path / f"c{bits}-{len(shape)}-{shape[-1]}.safetensors"
            plain = np.arange(6, dtype=np.int32)
            kc.save_constants(path, {"plain": plain}, {"t": kc.Palettized(shape, bits, group, lut, indices)})
            back = kc.load_constants(path)
            assert set(back) == {"plain", "t"}
            np.testing.assert_array_equal(back["plain"], plain)
            assert back["t"].dtype == dtype and back["t"].shape == shape
            np.testing.assert_array_equal(back["t"], _expected(lut, indices, shape, group), err_msg=f"{bits} {shape}")
            stored = load_file(str(path))  # bits packed without gaps
            assert stored["t:indices"].size == -(-indices.size * bits // 8)


def test_a_plain_file_loads_as_it_is(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"a": np.ones((2, 3), np.float16)}, str(path))
    assert kc.palettized_names(path) == {}
    np.testing.assert_array_equal(kc.load_constants(path)["a"], np.ones((2, 3), np.float16))


def _write(path, meta, entries):
    save_file(entries, str(path), metadata={kc.METADATA_KEY: json.dumps(meta)} if meta is not None else None)


@pytest.mark.parametrize(
    "meta, entries, says",
    [
        # a header claiming far more elements than its indices hold is refused before expanding anything
        (
            {"t": {"shape": [1 << 30, 1 << 10], "bits": 4, "group_rows": 16}},
            {"t:lut": np.zeros((1, 16), np.float16), "t:indices": np.zeros(8, np.uint8)},
            "needs",
        ),
        (
            {"t": {"shape": [4, 4], "bits": 9, "group_rows": 16}},
            {"t:lut": np.zeros((1, 16), np.float16), "t:indices": np.zeros(8, np.uint8)},
            "bits",
        ),
        (
            {"t": {"shape": [4, -4], "bits": 4, "group_rows": 16}},
            {"t:lut": np.zeros((1, 16), np.float16), "t:indices": np.zeros(8, np.uint8)},
            "shape",
        ),
        (
            {"t": {"shape": [4, 4], "bits": 4, "group_rows": 16}},
            {"t:lut": np.zeros((2, 16), np.float16), "t:indices": np.zeros(8, np.uint8)},
            r"not float16/float32 \[1, 16\]",
        ),
        ({"t": {"shape": [4, 4], "bits": 4, "group_rows": 16}}, {"t:indices": np.zeros(8, np.uint8)}, "missing"),
        (None, {"x:lut": np.zeros((1, 16), np.float16)}, "belongs to no declared"),
        ([1, 2], {"a": np.zeros(1, np.float16)}, "not a mapping"),
    ],
)
def test_a_constant_file_whose_parts_disagree_is_refused_with_why(tmp_path, meta, entries, says):
    path = tmp_path / "bad.safetensors"
    _write(path, meta, entries)
    with pytest.raises(kc.ConstantsError, match=says):
        kc.load_constants(path)


def _table(tmp_path, values, name="table.safetensors"):
    path = tmp_path / name
    save_file({"table": values, "other": np.arange(3, dtype=np.float32)}, str(path))
    return {"c": (path, name)}


def test_mixed_stores_the_narrowest_width_whose_snr_reaches_the_target(tmp_path):
    rng = np.random.default_rng(0)
    # Gaussian rows: 4-bit tables give 20.3 dB (over the 20 dB target); Student-t(3) rows' tails
    # need 6 bits (4 bits: ~16 dB)
    for law, values, bits in [
        ("gauss", rng.standard_normal((200, 256)), 4),
        ("student", rng.standard_t(3, (200, 256)), 6),
    ]:
        out = tmp_path / law
        written, (record,) = cc.compress_constants(
            _table(tmp_path, values.astype(np.float16), f"{law}.safetensors"), {"c": ("table",)}, "mixed", out
        )
        assert record.bits == bits, (law, record)
        assert record.snr_db >= MIXED_TARGET_DB
        back = kc.load_constants(written["c"])
        assert cc.snr_db(values.astype(np.float16), back["table"]) == pytest.approx(record.snr_db)
        np.testing.assert_array_equal(back["other"], np.arange(3, dtype=np.float32))  # the rest as it was
        assert record.bytes_after < record.bytes_before * (bits + 0.5) / 16


@pytest.mark.parametrize("mode, bits", [("p4", 4), ("p6", 6), ("w8", 8)])
def test_a_uniform_mode_stores_its_own_width(tmp_path, mode, bits):
    values = np.random.default_rng(1).standard_normal((40, 64)).astype(np.float32)
    written, (record,) = cc.compress_constants(_table(tmp_path, values), {"c": ("table",)}, mode, tmp_path / "out")
    assert record.bits == bits and kc.palettized_names(written["c"])["table"]["bits"] == bits
    (check,) = cc.constant_checks([record])
    assert check.status == "passed" and check.threshold == PALETTE_FLOOR_DB[bits]


def test_declared_patterns_pick_the_constants_present():
    declared = {"flowlm": ("text_embedding",), "voice_*": ("kv",)}
    present = {"flowlm": 1, "voice_alba": 1, "voice_marius": 1, "config": 1}
    assert cc.declared_tensors(declared, present) == {
        "flowlm": ("text_embedding",),
        "voice_alba": ("kv",),
        "voice_marius": ("kv",),
    }


def test_tables_written_wrong_fail_their_floor(tmp_path, monkeypatch):
    """Measured on the file as written, read back by the run loop's reader: indices packed in the
    wrong order (the writer's bug) fail the floor check; written right, the same table passes."""
    values = np.random.default_rng(2).standard_normal((64, 128)).astype(np.float16)
    _, (good,) = cc.compress_constants(_table(tmp_path, values), {"c": ("table",)}, "p6", tmp_path / "good")
    assert cc.constant_checks([good])[0].status == "passed"
    right = kc.pack_indices
    monkeypatch.setattr(kc, "pack_indices", lambda indices, bits: right(np.asarray(indices)[::-1], bits))
    _, (bad,) = cc.compress_constants(_table(tmp_path, values), {"c": ("table",)}, "p6", tmp_path / "bad")
    (check,) = cc.constant_checks([bad])
    assert check.status == "failed" and "under the 6-bit floor" in check.reason


def test_a_declared_tensor_that_cannot_be_tabled_is_refused(tmp_path):
    with pytest.raises(ValueError, match="has no tensor 'missing'"):
        cc.compress_constants(_table(tmp_path, np.ones((4, 4), np.float16)), {"c": ("missing",)}, "p4", tmp_path / "o")
    path = tmp_path / "ints.safetensors"
    save_file({"ids": np.ones((4, 4), np.int32)}, str(path))
    with pytest.raises(ValueError, match="only float16/float32"):
        cc.compress_constants({"c": (path, "ints.safetensors")}, {"c": ("ids",)}, "p4", tmp_path / "o")


def test_compressed_constants_need_the_loop_that_judges_them():
    from zoo.core.plugin.spec import ComponentSpec, ModelSpec, Variant

    with pytest.raises(ValueError, match="need a compressed_loop"):
        ModelSpec(
            "m",
            "s",
            {"fp16": Variant("fp16", "fp16")},
            "fp16",
            (ComponentSpec("c", "d"),),
            compressed_constants={"table": ("t",)},
        )


def test_a_relative_path_leading_outside_the_stage_is_refused_and_nothing_is_written(tmp_path):
    ((path, _),) = _table(tmp_path, np.ones((4, 4), np.float16)).values()
    out = tmp_path / "stage" / "files"
    with pytest.raises(ValueError, match="not a path inside the export"):
        cc.compress_constants({"c": (path, "../../outside.safetensors")}, {"c": ("table",)}, "p4", out)
    assert not (tmp_path / "outside.safetensors").exists() and not out.exists()


def test_the_snr_summed_in_chunks_is_the_whole_arrays():
    """Measured a chunk at a time (memory bounded for a 136 M-value table): the same number as the
    definition over the whole arrays in float64, for any chunk size; a non-finite element anywhere
    gives nan (a constant's record: -inf), identical tensors inf."""
    from zoo.core.validation.metrics import snr_db

    rng = np.random.default_rng(3)
    original = rng.standard_normal((37, 11)).astype(np.float32)
    stored = (original + 0.1 * rng.standard_normal((37, 11)) * np.linspace(0, 3, 37)[:, None]).astype(np.float16)
    x, y = stored.astype(np.float64), original.astype(np.float64)
    want = 10 * np.log10(np.sum(y**2) / np.sum((x - y) ** 2))
    for chunk in (1, 7, 100, 1 << 20):
        assert snr_db(stored, original, chunk=chunk) == pytest.approx(want, rel=1e-12), chunk
    assert cc.snr_db(original, stored) == pytest.approx(want, rel=1e-12)
    assert snr_db(original.copy(), original, chunk=7) == cc.snr_db(original, original.copy()) == float("inf")
    broken = stored.copy()
    broken[36, 10] = np.inf  # in the last chunk
    assert np.isnan(snr_db(broken, original, chunk=7)) and cc.snr_db(original, broken) == float("-inf")
    with pytest.raises(ValueError, match="shape mismatch"):
        cc.snr_db(original, stored[:-1])


def test_tables_clustered_in_worker_processes_are_the_ones_made_here(monkeypatch):
    """palettize hands its groups to worker processes (palette.prefill_groups); it then clusters
    nothing itself, and the tables and indices are the ones it makes alone. Fewer weights than one
    job: no processes start, it clusters them itself."""
    from zoo.core.compression import palette

    values = np.random.default_rng(4).standard_normal((70, 48)).astype(np.float16)  # 5 groups, the last short
    clustered = count_clustering(monkeypatch)
    monkeypatch.setattr(palette, "PREFILL_JOB", 16 * 48)  # a job per group: the pool starts
    made = {}
    for workers in (1, 2):
        monkeypatch.setattr(palette, "kmeans_workers", lambda: workers)
        clustered.clear()
        made[workers] = cc.palettize(values, 4)
        assert len(clustered) == (5 if workers == 1 else 0), workers
    np.testing.assert_array_equal(made[1].lut, made[2].lut)
    np.testing.assert_array_equal(made[1].indices, made[2].indices)
    monkeypatch.setattr(palette, "PREFILL_JOB", 1 << 20)
    monkeypatch.setattr(palette, "_pool", lambda workers: pytest.fail("a pool for less than a job"))
    clustered.clear()
    np.testing.assert_array_equal(cc.palettize(values, 4).lut, made[1].lut)
    assert len(clustered) == 5
