"""Compressed variants (core/compression/compress.py): executed by the MIL interpreter, judged by output SNR
against a bound the compressed weights predict, and broken compressions caught."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import count_clustering

from zoo.core.compression import compress, palette, passes
from zoo.core.export.cache import StageCache
from zoo.core.plugin.spec import WeightsSource
from zoo.core.registry.store import Registry

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_host(tiny_site, monkeypatch):
    monkeypatch.syspath_prepend(str(tiny_site))
    from zoo.core.host.plugins import PluginHost

    return PluginHost()


def _export(host, variant, tmp_path):
    from zoo.core.export.pipeline import Exporter

    registry = Registry(tmp_path / "registry.toml")
    exporter = Exporter(
        host, "tiny", variant, WeightsSource.random(0), tmp_path / "out", registry, StageCache(tmp_path / "cache")
    )
    return exporter, registry


def record_of(registry, component="vocoder"):
    return {c["name"]: c.get("compression") for c in registry.read().get("exports", [])[0]["components"]}[component]


def _mil(report, component):
    return [c for c in report.checks if c.level == "mil" and c.component == component]


@pytest.mark.parametrize("mode", ["w8", "p4", "mixed"])
def test_a_compressed_export_is_executed_judged_and_recorded(tiny_host, tmp_path, mode):
    from zoo.core.registry.verify import verify

    exporter, registry = _export(tiny_host, f"fp16-{mode}", tmp_path)
    report = exporter.run()
    assert report.ok and report.level == "mil"
    (check,) = _mil(report, "vocoder")  # the one weight over the threshold: the vocoder's 240 x 16
    assert [c.metric for c in _mil(report, "encoder")] == ["cosine_min"]  # nothing compressed: judged as fp16
    assert check.metric == "snr_db_min" and check.status == "passed" and check.value >= check.threshold
    assert "the 1 compressed weights' own errors at random signs" in check.basis and mode in check.basis
    # the bound stands on the measured response to noise of the compression's size, which the
    # compressed package meets within the margin (measured: tiny vocoder 0.7 dB under it at w8)
    assert check.threshold == pytest.approx(record_of(registry)["output_snr_db"] - compress.MARGIN_DB, abs=0.01)
    entry = registry.read().get("exports", [])[0]
    assert entry["variant"]["compression"] == mode and entry["variant"]["target"] == (
        "iOS17" if mode == "w8" else "iOS18"
    )
    record = {c["name"]: c.get("compression") for c in entry["components"]}
    assert record["vocoder"]["mode"] == mode and record["vocoder"]["compressed_weights"] == 1
    if mode == "mixed":  # one weight: the narrowest width whose measured effect meets the target
        (bits,) = record["vocoder"]["bits"].values()
        assert record["vocoder"]["plan"]["executions"] == 2
        assert record["vocoder"]["worst_weight_snr_db"] >= compress.PALETTE_FLOOR_DB[bits]
        assert check.value >= compress.MIXED_TARGET_DB - 3
    else:
        assert record["vocoder"]["worst_weight_snr_db"] >= compress.MODES[mode].weight_snr_floor_db
    assert record["vocoder"]["bytes_after"] < record["vocoder"]["bytes_before"]
    _, problems, executed = verify(registry, "", True)  # zoo verify --execute re-judges it by the recorded bound
    assert not problems and {r["metric"] for r in executed if r["component"] == "vocoder"} == {"snr_db_min"}


def test_a_compressed_variant_reuses_the_stages_its_uncompressed_variant_built(tiny_host, tmp_path):
    """Reference, constants and loop parity are keyed on precision and options, convert also on the
    target: fp16-w8 (iOS17, as fp16) rebuilds nothing before compression; fp16-p4 (iOS18) converts."""

    def statuses(variant):
        exporter, _ = _export(tiny_host, variant, tmp_path)
        report = exporter.run()
        assert report.ok
        return {s.stage: s.status for s in report.stages}

    statuses("fp16")
    w8, p4 = statuses("fp16-w8"), statuses("fp16-p4")
    torch_side = ["parity:encoder", "parity:vocoder", "constants", "loop_parity"]
    assert all(w8[name] == "cached" for name in torch_side + ["convert:encoder", "convert:vocoder"])
    assert w8["compress:vocoder"] == "done"
    assert all(p4[name] == "cached" for name in torch_side)
    assert p4["convert:vocoder"] == "done" and p4["compress:vocoder"] == "done"


def _shuffle_luts(prog) -> int:
    """Permute every look-up table's entries in place: indices now point at the wrong values."""
    rng = np.random.default_rng(0)
    count = 0
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type == "constexpr_lut_to_dense":
                var = op.inputs["lut"]
                order = rng.permutation(var.val.shape[-2])
                # what is serialized (the const op's value) and what the program reads (its output)
                for lut in {id(a): a for a in (var.op.val.val, var.val)}.values():
                    lut[...] = np.take(lut, order, axis=-2)
                count += 1
    return count


def test_a_lut_shuffled_after_palettization_fails_the_mil_level(tiny_host, tmp_path, monkeypatch):
    """The saved package's tables are shuffled after the weights were measured: the executed
    outputs fall under the bound the (honest) measurement predicted."""
    real_save = compress._save
    shuffled = []

    def save(prog, *args):
        shuffled.append(_shuffle_luts(prog))
        real_save(prog, *args)

    monkeypatch.setattr(compress, "_save", save)
    exporter, registry = _export(tiny_host, "fp16-p4", tmp_path)
    report = exporter.run()
    assert shuffled == [0, 1]  # the encoder has no weight over the threshold: nothing to shuffle
    (check,) = _mil(report, "vocoder")
    assert check.status == "failed" and check.metric == "snr_db_min" and check.value < 0 < check.threshold
    # tiny requires only the reference level: registered, stating the highest level reached
    assert report.level == "reference" and registry.read().get("exports", [])[0]["validation_level"] == "reference"


def test_a_lut_broken_before_it_is_measured_fails_by_the_weight_floor(tiny_host, tmp_path, monkeypatch):
    """A palettizer that breaks its tables before zoo measures them: the weight decompresses under
    the mode's floor, and no output bound is derived from it (the check fails, naming the weight)."""
    real = compress.weight_snrs

    def measured(prog, originals):
        _shuffle_luts(prog)
        return real(prog, originals)

    monkeypatch.setattr(compress, "weight_snrs", measured)
    exporter, _ = _export(tiny_host, "fp16-p4", tmp_path)
    report = exporter.run()
    assert report.level == "reference"
    (check,) = _mil(report, "vocoder")
    assert check.status == "failed" and "the compression is broken" in check.basis and "floor 10 dB" in check.basis


def test_pocket_tts_speaks_through_mixed_width_packages(zoo):
    """A real model at small size, fp16-mixed: each weight's table width chosen by its measured
    effect on the outputs (the RoPE tables kept, as declared), the component judged at the mil
    level, spoken through by zoo run and re-checked by verify --execute."""
    import json
    from collections import Counter

    pytest.importorskip("pocket_tts")
    report = json.loads(
        zoo(
            "export",
            "pocket_tts",
            "--random-weights",
            "--variant",
            "small-fp16-mixed",
            "--out",
            str(zoo.out),
            "--json",
            check=True,
        ).stdout
    )
    assert report["ok"] and report["validation_level"] == "mil"
    mil = {
        c["component"]: c
        for c in report["validation"]
        if c["level"] == "mil" and c["component"] != "loop:compressed" and not c["component"].startswith("constant:")
    }
    assert {c: (m["metric"], m["status"]) for c, m in mil.items()} == {
        c: ("snr_db_min", "passed") for c in ("flowlm", "mimi", "voice_encoder")
    }
    # the text table and the voice's cache ship as look-up tables, each at its width's floor or better,
    # and the loop below spoke with them (loop:compressed)
    from zoo.core.kit.constants import palettized_names

    constants = {c["component"]: c for c in report["validation"] if c["component"].startswith("constant:")}
    assert {c: m["status"] for c, m in constants.items()} == {
        "constant:flowlm": "passed",
        "constant:voice_random": "passed",
    }
    export = Path(report["path"])
    assert palettized_names(export / "constants" / "flowlm.safetensors").keys() == {"text_embedding"}
    assert palettized_names(export / "constants" / "voice_random.safetensors").keys() == {"kv"}
    records = {c["name"]: c["compression"] for c in report["components"]}
    assert records["flowlm"]["kept"] == ["transformer_rope_cos_to_fp16", "transformer_rope_sin_to_fp16"]
    widths = Counter(b for r in records.values() for b in r["bits"].values())
    assert set(widths) <= set(compress.MIXED_BITS) and len(widths) >= 2  # the measurements made a difference
    for name, record in records.items():
        assert record["compressed_weights"] == len(record["bits"])
        for output in record["plan"]["outputs"].values():
            assert output["target_db"] == compress.MIXED_TARGET_DB
            assert output["estimated_db"] >= output["target_db"] or all(b == 8 for b in record["bits"].values())
        # the estimate (from one execution per weight) holds for the whole component within 3 dB
        # (measured at this size: flowlm 25.0 dB for an estimate of 27.9, mimi 20.7 / 20.7, voice encoder 22.1 / 21.6)
        assert mil[name]["value"] >= compress.MIXED_TARGET_DB - 3, name
    loop = {c["metric"]: c for c in report["validation"] if c["component"] == "loop:compressed"}
    assert {m: c["status"] for m, c in loop.items()} == {"frames_delta": "passed", "spectral_max": "passed"}
    assert loop["frames_delta"]["threshold"] == 1 and "seeds 0 and 1" in loop["spectral_max"]["basis"]
    # all at 4 bits the same weights reach 9.7-14.7 dB (p4, full size); all at 6 bits 60% more bytes than 4
    assert sum(r["bytes_after"] for r in records.values()) < 0.6 * sum(r["bytes_before"] for r in records.values())
    run = json.loads(
        zoo(
            "run",
            "pocket_tts",
            "Hello there.",
            "-o",
            str(zoo.workdir / "mixed.wav"),
            "--variant",
            "small-fp16-mixed",
            "--backend",
            "mil",
            "--json",
            check=True,
        ).stdout
    )
    assert run["frames"] > 0 and run["source"] == f"export {report['id']}"
    assert json.loads(zoo("verify", "--execute", "--json", check=True).stdout)["ok"]
    listed = json.loads(zoo("info", "pocket_tts", "--json", check=True).stdout)
    assert {"fp16-w8", "fp16-p6", "fp16-p4", "fp16-mixed"} <= set(listed["variants"])
    flowlm = next(c for c in listed["components"] if c["name"] == "flowlm")
    assert flowlm["uncompressed"] and "RoPE" in flowlm["uncompressed_reason"]
    assert listed["compressed_loop"]["frames_max_delta"] == 1
    assert listed["compressed_constants"] == {"flowlm": ["text_embedding"], "voice_*": ["kv"]}


def test_vibevoice_exports_and_speaks_at_mixed_widths(zoo):
    """The third model at small size: fp16-mixed registered at the mil level with its widths, the
    whole loop within its bound, and zoo run speaking through the packages (measured 2026-12-04:
    packages 6.9 -> 2.7 MB, outputs 20.5-23.2 dB, the lm's token table 20.5 dB at 4 bits, loop
    spectral 0.26 for a seed distance of 0.62)."""
    import json

    pytest.importorskip("transformers")
    report = json.loads(
        zoo(
            "export",
            "vibevoice",
            "--random-weights",
            "--variant",
            "small-fp16-mixed",
            "--out",
            str(zoo.out),
            "--json",
            check=True,
        ).stdout
    )
    assert report["ok"] and report["validation_level"] == "mil"
    mil = {(c["component"], c["metric"]): c for c in report["validation"] if c["level"] == "mil"}
    assert {c for c, _ in mil} == {"lm", "tts_lm", "sampler", "decoder", "loop:compressed", "constant:embeddings"}
    assert all(c["status"] == "passed" for c in mil.values()), {k: c["status"] for k, c in mil.items()}
    # the lm's token table ships as look-up tables, and the loop below spoke with it (loop:compressed)
    from zoo.core.kit.constants import palettized_names

    assert palettized_names(Path(report["path"]) / "constants" / "embeddings.safetensors").keys() == {"embed_tokens"}
    records = {c["name"]: c["compression"] for c in report["components"]}
    assert all(r["mode"] == "mixed" and r["bits"] and r["bytes_after"] < r["bytes_before"] for r in records.values())
    assert sum(r["bytes_after"] for r in records.values()) < 0.6 * sum(r["bytes_before"] for r in records.values())
    for name in ("lm", "tts_lm", "sampler", "decoder"):
        assert mil[(name, "snr_db_min")]["value"] >= compress.MIXED_TARGET_DB - 3, name
    run = json.loads(
        zoo(
            "run",
            "vibevoice",
            "Hello there.",
            "-o",
            str(zoo.workdir / "mixed.wav"),
            "--variant",
            "small-fp16-mixed",
            "--backend",
            "mil",
            "--set",
            "max_seconds=1",
            "--json",
            check=True,
        ).stdout
    )
    assert run["frames"] > 0 and run["source"] == f"export {report['id']}"


def test_the_output_bound_is_the_measured_response_less_the_margin_and_never_under_the_floor():
    def record(snrs, measured):
        return compress.CompressionRecord(
            "p4", tuple((f"w{i}", s) for i, s in enumerate(snrs)), (), 2, 1, output_snr_db=measured
        )

    assert record([20.0], 14.0).bound()[0] == pytest.approx(14.0 - compress.MARGIN_DB)
    # the unit-gain prediction is recorded, not judged by: ten equal noise sources predict 10 dB
    # less, but the bound follows what the outputs measured (an amplifying component: below it)
    ten = record([20.0] * 10, 6.5)
    assert ten.predicted_snr_db == pytest.approx(10.0) and ten.bound()[0] == pytest.approx(6.5 - compress.MARGIN_DB)
    bound, basis = record([20.0], 1.0).bound()  # measured under the margin: the floor holds
    assert bound == compress.OUTPUT_SNR_FLOOR_DB and basis.startswith("the 0 dB floor")
    assert record([20.0], None).bound()[0] == float("inf")  # nothing measured: nothing passes
    broken = record([20.0, 5.0], 30.0)  # under p4's weight floor (10 dB), whatever the outputs did
    assert broken.bound() == (float("inf"), broken.broken()) and "w1: 5.0 dB" in broken.broken()


@pytest.mark.parametrize("bits", [6, 4])
@pytest.mark.parametrize("law", ["normal", "laplace", "student_t"])
def test_lut_kmeans_is_as_good_as_coremltools_own_kmeans(bits, law):
    """zoo's look-up tables (exact k-means on 512 binned points, refined by Lloyd) against
    coremltools' exact k-means over every distinct value: within 0.1 dB, every index pointing
    at the nearest table entry."""
    from coremltools.models.neural_network.quantization_utils import _get_kmeans_lookup_table_and_weight

    rng = np.random.default_rng(bits)
    draw = {
        "normal": rng.standard_normal,
        "laplace": rng.laplace,
        "student_t": lambda size: rng.standard_t(3, size=size),
    }[law]
    group = draw(size=(16, 1024)).astype(np.float16)
    lut, index = compress.lut_kmeans(group, bits)
    assert lut.shape == (1 << bits,) and lut.dtype == group.dtype and index.dtype == np.uint8
    table = lut.astype(np.float64)
    values = group.astype(np.float64).reshape(-1)
    nearest = np.abs(values[:, None] - table[None, :]).min(axis=1)
    assert np.allclose(np.abs(values - table[index]), nearest)

    def snr(lut, index):
        return 10 * np.log10(np.sum(values**2) / np.sum((values - lut.astype(np.float64)[index.astype(int)]) ** 2))

    ref_lut, ref_index = _get_kmeans_lookup_table_and_weight(bits, group)
    assert snr(lut, index) >= snr(ref_lut, ref_index.reshape(-1)) - 0.1


def test_the_optimal_programme_matches_coremltools_kmeans1d_cost_for_cost():
    """``kmeans.optimal`` (divide and conquer over each row of the programme) reaches the least
    within-cluster cost kmeans1d's SMAWK finds, on sorted weighted points of heavy-tailed and
    tied data, for every table width, including more clusters than points."""
    from coremltools._deps import kmeans1d

    from zoo.core.compression import kmeans

    rng = np.random.default_rng(7)

    def cost(points, weights, centroids):
        nearest = np.searchsorted((centroids[:-1] + centroids[1:]) / 2, points)
        return float(np.sum(weights * (points - centroids[nearest]) ** 2))

    for case in range(120):
        n = int(rng.integers(2, 700))
        raw = rng.standard_t(3, n) if case % 3 else np.round(rng.standard_normal(n) * 4) / 4
        points = np.unique(raw * 0.02)
        weights = rng.random(points.size) * 10 + 0.1
        k = int(rng.choice([1, 2, 16, 64, 256]))
        ours = kmeans.optimal(points, weights, k)
        theirs = np.asarray(kmeans1d.cluster(points, k, weights=weights).centroids)
        assert len(ours) == len(theirs) == min(k, points.size) and np.all(np.diff(ours) > 0)
        scale = float(np.sum(weights * (points - np.average(points, weights=weights)) ** 2))
        assert cost(points, weights, ours) <= cost(points, weights, theirs) + 1e-12 * scale, case


def test_nearest_entry_of_every_fp16_pattern_is_numpy_searchsorted():
    """fp16 weights find their table entry by bit pattern (compiled, each pattern searched once):
    for all 65,536 patterns (both zeros, subnormals, infinities, NaN) in shuffled order, the
    entry numpy's searchsorted over the midpoints gives, for tables with ties and unsorted ones."""
    rng = np.random.default_rng(5)
    every = rng.permutation(np.arange(1 << 16, dtype=np.uint16)).view(np.float16)
    for case in range(6):
        lut = (rng.standard_normal(16 if case % 2 else 64) * rng.choice([1e-3, 1.0, 300.0])).astype(np.float16)
        if case == 4:
            lut[3] = lut[7]  # two equal entries
        order = np.argsort(lut, kind="stable")
        stored = lut[order].astype(np.float64)
        want = order[np.searchsorted((stored[:-1] + stored[1:]) / 2, every.astype(np.float64), side="right")]
        assert np.array_equal(palette._nearest(every, lut), want.astype(np.uint8)), case
        assert np.array_equal(palette._nearest(every[::-1].copy(), lut), want[::-1].astype(np.uint8))


def test_error_energy_in_chunks_is_the_whole_array_sum(monkeypatch):
    """A weight's error and signal energies summed a chunk at a time (ragged last chunk, fp16
    against float32) equal the whole-array float64 sums to summation order; sizes must match."""
    rng = np.random.default_rng(2)
    exact = (rng.standard_normal((37, 29)) * 0.02).astype(np.float16)
    approx = (exact.astype(np.float32) + rng.standard_normal((37, 29)).astype(np.float32) * 1e-3).astype(np.float32)
    want = (
        float(np.sum((approx.astype(np.float64) - exact.astype(np.float64)) ** 2)),
        float(np.sum(exact.astype(np.float64) ** 2)),
    )
    for chunk in (1 << 20, 100, 7):
        monkeypatch.setattr(passes, "ENERGY_CHUNK", chunk)
        got = passes.error_energy(approx, exact)
        assert got == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError):
        passes.error_energy(approx[:3], exact)
    # two fp16 arrays (by their bits) and two float32 ones: one compiled pass, the same sums
    for a, e in ((approx.astype(np.float16), exact), (approx, exact.astype(np.float32)), (approx.T, exact.T)):
        want = (
            float(np.sum((a.astype(np.float64) - e.astype(np.float64)) ** 2)),
            float(np.sum(e.astype(np.float64) ** 2)),
        )
        assert passes.error_energy(a, e) == pytest.approx(want, rel=1e-12), (a.dtype, e.dtype)


def test_lloyd_compiled_takes_the_numpy_steps():
    """The compiled Lloyd iterations give the numpy formulation's centroids bit for bit (what
    ``lut_kmeans`` computed before they were compiled), stopping when no value changes centroid."""
    from zoo.core.compression import kmeans

    rng = np.random.default_rng(3)
    for case in range(40):
        values = np.unique(rng.standard_t(3, 3000).astype(np.float16)).astype(np.float64)
        counts = rng.integers(1, 9, values.size)
        mass = np.concatenate([[0], np.cumsum(counts)])
        moment = np.concatenate([[0.0], np.cumsum(counts * values)])
        start = np.sort(rng.choice(values, 16 if case % 2 else 64, replace=False))
        centroids, previous = start.copy(), None
        for _ in range(300):
            new = np.searchsorted(values, (centroids[:-1] + centroids[1:]) / 2)
            if previous is not None and np.array_equal(new, previous):
                break
            previous = new
            edges = np.concatenate([[0], new, [values.size]])
            n = mass[edges[1:]] - mass[edges[:-1]]
            centroids = np.where(n > 0, (moment[edges[1:]] - moment[edges[:-1]]) / np.maximum(n, 1), centroids)
        assert np.array_equal(kmeans.lloyd(values, mass, moment, start, 300), centroids), case
        assert np.array_equal(kmeans.lloyd(values, mass, moment, start, 0), start)


def test_the_compressed_loop_is_judged_against_what_another_seed_does():
    from zoo.core.plugin.run import RunResult
    from zoo.core.plugin.spec import CompressedLoop
    from zoo.core.validation.checks import compressed_loop_checks

    rng = np.random.default_rng(0)
    t = np.arange(24000) / 24000
    speech = np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    result = lambda audio, frames: RunResult(audio, 24000, frames)  # noqa: E731
    loop = CompressedLoop("text", frames_max_delta=1, spectral_factor=1.0, basis="measured")
    base = result(speech, 10)
    other_seed = result(speech + 0.05 * rng.standard_normal(len(t)), 10)
    close = result(speech + 0.01 * rng.standard_normal(len(t)), 11)
    far = result(speech + 0.2 * rng.standard_normal(len(t)), 12)

    def verdict(compressed):
        return {c.metric: c.status for c in compressed_loop_checks(compressed, base, other_seed, loop)}

    assert verdict(close) == {"frames_delta": "passed", "spectral_max": "passed"}
    assert verdict(far) == {"frames_delta": "failed", "spectral_max": "failed"}
    # the same audio 100x quieter is far in spectrum: the bound is relative, not an absolute level
    assert verdict(result(speech / 100, 10))["spectral_max"] == "failed"
    assert verdict(result(np.zeros(0), 10))["spectral_max"] == "failed"


def test_widths_grow_where_they_buy_the_most_and_an_unreachable_output_does_not_stop_the_others():
    from zoo.core.compression.compress import MIXED_BITS, choose_widths

    noise = {
        4: {"a": 1e-2, "b": 1e-2, "c": 1e-2},
        6: {"a": 6e-4, "b": 6e-4, "c": 6e-4},
        8: {"a": 4e-5, "b": 4e-5, "c": 4e-5},
    }
    size = {"a": 100, "b": 100, "c": 100}
    # output 0 hears only "a", so loudly that even 8 bits leave it over its budget; output 1
    # hears "b" ten times more than "c"
    gain = {"a": np.array([1e3, 0.0]), "b": np.array([0.0, 10.0]), "c": np.array([0.0, 1.0])}
    width = {"a": 4, "b": 4, "c": 4}
    total = choose_widths(width, gain, noise, size, np.array([1e-3, 2e-2]))
    assert width["a"] == MIXED_BITS[-1] and total[0] > 1e-3  # widened to the end, still over: recorded as such
    assert width == {"a": 8, "b": 6, "c": 4} and total[1] <= 2e-2  # then output 1 served, by the layer it hears most


def test_six_bit_tables_are_measured_only_for_the_layers_a_plan_widens():
    """``widths_measuring`` plans on estimated 6-bit noise, measures the layers it widened, and plans
    again on the measurements: the widths and the predicted noise are those of a plan that knew
    every 6-bit noise, and a layer no plan widened is never clustered at 6 bits."""
    from zoo.core.compression.planner import choose_widths, widths_measuring

    groups = {"a": ["a.w", "a.v"], "b": ["b.w"], "c": ["c.w"], "d": ["d.w"]}
    energy = {"a.w": 1.0, "a.v": 3.0, "b.w": 1.0, "c.w": 1.0, "d.w": 1.0}
    noise4 = {n: 1e-2 for n in energy}
    # a's tables gain far more than the 1/16 estimate at 6 bits, b's less: the first plan is off
    noise6 = {"a.w": 1e-4, "a.v": 2e-4, "b.w": 2e-3, "c.w": 5e-4, "d.w": 6e-4}
    gain = {g: np.array([1.0, 0.0]) for g in "abc"} | {"d": np.array([0.0, 0.01])}
    size = {"a": 400, "b": 100, "c": 100, "d": 100}
    budget = np.array([0.012, 1.0])
    asked: list[list[str]] = []

    def measure(names):
        asked.append(sorted(names))
        return {n: noise6[n] for n in names}

    width, total, measured, passes = widths_measuring(groups, energy, noise4, gain, size, budget, set(), measure)

    def layer(per_weight):
        return {g: sum(per_weight[n] * energy[n] for n in ns) / sum(energy[n] for n in ns) for g, ns in groups.items()}

    exact = {4: layer(noise4), 6: layer(noise6), 8: layer({n: e / 16 for n, e in noise6.items()})}
    want = dict.fromkeys(groups, 4)
    want_total = choose_widths(want, gain, exact, size, budget)
    assert width == want and np.allclose(total, want_total) and total[0] <= budget[0]
    assert all(n in measured for g, ns in groups.items() if width[g] > 4 for n in ns)
    assert "d.w" not in measured and passes == 1 + len(asked) and len(asked) >= 1  # d: heard too little to widen
    # a layer no op reads directly (no gain) stays at 8 bits; weights coremltools leaves uncompressed
    # at 6 bits keep their estimates, and the loop still ends
    fixed_gain = {g: v for g, v in gain.items() if g != "c"}
    width2, _, measured2, _ = widths_measuring(groups, energy, noise4, fixed_gain, size, budget, {"c"}, lambda n: {})
    assert width2["c"] == 8 and "c.w" not in measured2 and set(measured2) < set(energy)


def test_layers_under_one_percent_are_planned_as_one_unless_unmeasurable():
    from zoo.core.compression.planner import SMALL_LAYERS, merge_small_layers

    groups = {"big": ["big.w"], "s1": ["s1.w", "s1.b"], "s2": ["s2.w"], "list": ["list.w"], "mid": ["mid.w"]}
    sizes = {"big.w": 9000, "s1.w": 40, "s1.b": 40, "s2.w": 50, "list.w": 30, "mid.w": 900}
    merged = merge_small_layers(groups, sizes, lambda n: n != "list.w")
    # s1 (80 of 10,060 values) and s2 (50) merged; the unreadable one kept apart (held at 8 bits); 1% is 100.6
    assert merged == {"big": ["big.w"], "list": ["list.w"], "mid": ["mid.w"], SMALL_LAYERS: ["s1.w", "s1.b", "s2.w"]}
    # one small layer alone stays as it was
    assert merge_small_layers({"big": ["big.w"], "s2": ["s2.w"]}, sizes, lambda n: True) == {
        "big": ["big.w"],
        "s2": ["s2.w"],
    }


def test_a_widening_later_ones_made_unneeded_is_narrowed_again():
    from zoo.core.compression.compress import choose_widths

    # "b" removes the most noise per byte first (4 -> 6 -> 8 bits), then only the big "a" at 6
    # bits brings the output within budget; with "a" at 6, "b" at 6 is enough
    noise = {4: {"a": 1.0, "b": 1.0}, 6: {"a": 0.05, "b": 0.5}, 8: {"a": 0.01, "b": 0.4}}
    gain = {"a": np.array([1.0]), "b": np.array([1.0])}
    width = {"a": 4, "b": 4}
    total = choose_widths(width, gain, noise, {"a": 100, "b": 10}, np.array([1.0]))
    assert width == {"a": 6, "b": 6} and total[0] == pytest.approx(0.55)


@pytest.mark.parametrize("distinct", [None, 10])
def test_a_group_seen_again_gets_the_same_table_and_indices(monkeypatch, distinct):
    """Within one compression, a group already clustered (a weight another function shares, or
    mixed's passes at 4 and 6 bits) reuses its table; every weight decodes to the same value."""
    rng = np.random.default_rng(1)
    group = rng.normal(size=(16, 256)).astype(np.float16)
    if distinct:  # fewer distinct values than table entries: the table holds them, padded
        group = rng.choice(rng.normal(size=distinct), size=(16, 256)).astype(np.float16)
    fresh_lut, fresh_index = compress.lut_kmeans(group, 4)
    tables = {}
    compress.lut_kmeans(group, 4, tables=tables)
    assert len(tables) == 1
    monkeypatch.setattr(palette, "_lut_kmeans", lambda *a: pytest.fail("clustered again"))
    lut, index = compress.lut_kmeans(group, 4, tables=tables)
    assert np.array_equal(lut, fresh_lut) and np.array_equal(lut[index], fresh_lut[fresh_index])


def test_fp16_distinct_values_by_counting_bit_patterns_equal_np_unique():
    """The table's distinct values, their indices and counts, counted over fp16 bit patterns: the
    same as np.unique's (-0 and 0 one value; infinities; a NaN takes np.unique itself)."""
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = int(rng.integers(1, 5000))
        x = (rng.standard_normal(n) * rng.choice([1e-6, 1e-3, 1.0, 100.0])).astype(np.float16)
        x[rng.integers(0, n, size=max(1, n // 10))] = np.float16(-0.0) if trial % 2 else np.float16(0.0)
        if trial % 3 == 0:
            x[0], x[-1] = np.float16(np.inf), np.float16(-np.inf)
        if trial == 5:
            x[1] = np.float16(np.nan)
        want = np.unique(x, return_inverse=True, return_counts=True)
        got = compress._distinct(x)
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a.reshape(-1), b)
        assert np.array_equal(got[0][got[1]], x, equal_nan=True)


def test_tables_clustered_in_worker_processes_are_the_ones_the_pass_would_make(tmp_path, monkeypatch):
    """prefill_tables cuts the groups with coremltools' own blockwise_compress and clusters them in
    two processes before the pass: the pass then clusters nothing itself, and the package is the
    one a single process makes (a linear weight, a conv's, a conv_transpose's grouped on axis 1, a
    weight kept uncompressed), when the groups go out in many small jobs and it must wait for the
    oldest before handing out more ("2 small"); fewer weights than one job start no processes (2)."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto
    from coremltools.converters.mil import Builder as mb

    rng = np.random.default_rng(0)
    w = {
        "lin": rng.normal(size=(64, 96)).astype(np.float32),
        "conv": rng.laplace(size=(48, 32, 3)).astype(np.float32),
        "deconv": rng.normal(size=(32, 32, 4)).astype(np.float32),
        "kept": rng.normal(size=(32, 96)).astype(np.float32),
    }

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 32, 20))], opset_version=ct.target.iOS18)
    def prog(x):
        y = mb.conv(x=x, weight=w["conv"], name="c")
        y = mb.conv_transpose(x=mb.slice_by_size(x=y, begin=[0, 0, 0], size=[1, 32, 18]), weight=w["deconv"])
        flat = mb.reshape(x=mb.slice_by_size(x=y, begin=[0, 0, 0], size=[1, 32, 3]), shape=[1, 96])
        return mb.linear(x=flat, weight=w["lin"]), mb.linear(x=flat, weight=w["kept"])

    src = tmp_path / "m.mlpackage"
    ct.convert(
        prog,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS18,
        compute_precision=ct.precision.FLOAT16,
    ).save(str(src))
    made, in_pass = {}, {}
    clustered = count_clustering(monkeypatch)
    for workers in (1, 2, "2 small"):
        if workers == "2 small":  # a job per group or two, at most three groups' weights out at once
            monkeypatch.setattr(palette, "PREFILL_JOB", 1024)
            monkeypatch.setattr(palette, "PREFILL_BATCH", 3 * 1024)
        spec, loaded = passes._load(src)
        kept = [op.name for op in passes._weight_consts(loaded) if op.outputs[0].shape == (32, 96)]
        assert len(kept) == 1
        monkeypatch.setattr(passes, "kmeans_workers", lambda: 2 if workers == "2 small" else workers)
        tables: dict = {}
        config = cto.OptimizationConfig(
            global_config=palette.palette_config(4, tables), op_name_configs={name: None for name in kept}
        )
        clustered.clear()
        passes._apply(loaded, spec, "palette", config)
        in_pass[workers] = len(clustered)
        made[workers] = {
            op.name: [np.asarray(v.val).copy() for v in op.inputs.values() if v.val is not None]
            for fn in loaded.functions.values()
            for op in fn.operations
            if op.op_type.startswith("constexpr_")
        }
    # fewer weights than one job (2): no processes, the pass clusters; in jobs ("2 small"): every table prefilled
    assert in_pass[1] > 0 and in_pass[2] == in_pass[1] and in_pass["2 small"] == 0, in_pass
    for other in (2, "2 small"):
        assert made[1].keys() == made[other].keys() and len(made[1]) == 3, made[1].keys()
        for name, arrays in made[1].items():
            assert all(np.array_equal(a, b) for a, b in zip(arrays, made[other][name])), (other, name)


def test_the_equivalent_noise_is_the_same_whatever_order_the_program_holds_its_weights_in(tmp_path):
    """coremltools' passes do not keep one order of a function's ops from run to run: each weight's
    random signs come from its own name, so the gate's basis does not move with the order (drawn in
    op order, flowlm's came out 19.2 or 20.6 dB from one run to the next)."""
    from types import SimpleNamespace

    import coremltools as ct
    import coremltools.optimize.coreml as cto
    from coremltools.converters.mil import Builder as mb

    from zoo.core.compression.record import equivalent_output_snr
    from zoo.core.mil import MilProgram
    from zoo.core.validation import parity

    rng = np.random.default_rng(3)
    w = [rng.normal(size=(64, 64)).astype(np.float32) for _ in range(3)]

    @mb.program(input_specs=[mb.TensorSpec(shape=(4, 64))], opset_version=ct.target.iOS18)
    def prog(x):
        for weight in w:
            x = mb.tanh(x=mb.linear(x=x, weight=weight))
        return x

    src = tmp_path / "m.mlpackage"
    ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS18).save(str(src))
    x = rng.normal(size=(4, 64)).astype(np.float32)
    want = MilProgram.load(src).run({"x": x})
    parity.save(tmp_path / "p.gz", [parity.ParityCase("main", 0, {"x": x}, want)])
    spec, compressed = passes._load(src)
    originals = {op.name: op.outputs[0].val for op in passes._weight_consts(compressed)}
    assert len(originals) == 3
    passes._apply(compressed, spec, "palette", cto.OptimizationConfig(global_config=palette.palette_config(4, {})))
    ops = list(compressed.functions["main"].operations)
    forward = equivalent_output_snr(src, compressed, originals, tmp_path / "p.gz")
    backward = equivalent_output_snr(
        src, SimpleNamespace(functions={"main": SimpleNamespace(operations=ops[::-1])}), originals, tmp_path / "p.gz"
    )
    assert forward == backward and np.isfinite(forward[0])
    other_seed = equivalent_output_snr(src, compressed, originals, tmp_path / "p.gz", seed=1)
    assert other_seed != forward  # the signs are drawn, not fixed


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_each_weight_indexes_the_table_entry_nearest_to_it(dtype):
    """``_nearest`` (fp16: placed once per distinct bit pattern) against one search per value in
    float64, over an unsorted table, with zeros of both signs, subnormals, infinities and values on
    the midpoints between entries (ties go to the larger entry)."""
    rng = np.random.default_rng(5)
    lut = rng.permutation(np.sort(rng.normal(size=16)).astype(dtype))
    s = np.sort(lut.astype(np.float64))
    special = np.array([0.0, -0.0, 6e-8, -6e-8, np.inf, -np.inf, *((s[:-1] + s[1:]) / 2)], np.float64)
    flat = np.concatenate([rng.normal(size=4096) * 1.5, special]).astype(dtype)
    order = np.argsort(lut, kind="stable")
    edges = (s[:-1] + s[1:]) / 2
    expected = order[np.searchsorted(edges, flat.astype(np.float64), side="right")]
    np.testing.assert_array_equal(palette._nearest(flat, lut), expected)
    assert palette._nearest(flat, lut).dtype == np.uint8


def test_fp16_distinct_values_compiled_equal_np_unique():
    """``kmeans.distinct_fp16`` (the values and counts a table is clustered from): np.unique's over
    every non-NaN fp16 pattern shuffled, and over random groups with zeros of both signs (or -0
    only) and infinities; a NaN: nothing (the caller takes np.unique)."""
    from zoo.core.compression import kmeans, palette

    decoded = palette._fp16_values()
    rng = np.random.default_rng(6)
    every = np.arange(1 << 16, dtype=np.uint16)
    finite_or_inf = every[~np.isnan(every.view(np.float16))]
    groups = [rng.permutation(finite_or_inf).view(np.float16)]
    for trial in range(40):
        x = (rng.standard_normal(int(rng.integers(1, 4000))) * rng.choice([1e-6, 1e-2, 1.0, 300.0])).astype(np.float16)
        x[rng.integers(0, x.size, size=max(1, x.size // 10))] = np.float16(-0.0) if trial % 2 else np.float16(0.0)
        if trial % 5 == 0:
            x[0], x[-1] = np.float16(np.inf), np.float16(-np.inf)
        if trial % 7 == 0:
            x = np.abs(x) if trial % 2 else -np.abs(x)
        groups.append(x)
    groups.append(np.full(9, -0.0, np.float16))
    for x in groups:
        values, counts = kmeans.distinct_fp16(x.view(np.uint16), decoded)
        want_values, want_counts = np.unique(x, return_counts=True)
        np.testing.assert_array_equal(values, want_values.astype(np.float64))
        np.testing.assert_array_equal(counts, want_counts)
    spoiled = groups[1].copy()
    spoiled[3] = np.float16(np.nan)
    assert kmeans.distinct_fp16(spoiled.view(np.uint16), decoded)[0].size == 0
