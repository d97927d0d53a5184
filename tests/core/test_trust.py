"""What zoo reads back from disk is checked before it is reused, and zoo deletes only what it made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Zoo

from zoo.core.registry.store import Registry

pytestmark = pytest.mark.slow


def _export(zoo: Zoo, *extra: str) -> dict:
    return json.loads(
        zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), "--json", *extra, check=True).stdout
    )


def test_poisoned_cache_stage_is_rebuilt_not_registered(zoo: Zoo):
    """One byte flipped in a cached package, then an export without --force: the stage fails its
    recorded hash, is rebuilt (and says so), and the registered package is the clean one."""
    first = _export(zoo)
    stages = [
        p
        for p in (zoo.cache / "stages").iterdir()
        if json.loads((p / ".complete").read_text()).get("stage") == "convert:vocoder"
    ]
    weights = sorted(stages[0].rglob("weight.bin"))
    data = bytearray(weights[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights[0].write_bytes(bytes(data))

    zoo.registry.unlink()  # forget the first export (an intact identical export would be reused)
    second = _export(zoo)
    statuses = {s["stage"]: (s["status"], s["detail"]) for s in second["stages"]}
    assert statuses["convert:vocoder"][0] == "done" and "rejected" in statuses["convert:vocoder"][1]
    assert statuses["convert:encoder"][0] == "cached"
    assert any("convert:vocoder" in w for w in second["warnings"])
    # conversion writes fresh identifiers into the manifest, so compare the weights themselves
    clean = sorted((Path(first["path"]) / "vocoder.mlpackage").rglob("weight.bin"))[0].read_bytes()
    assert (
        sorted((Path(second["path"]) / "vocoder.mlpackage").rglob("weight.bin"))[0].read_bytes() == clean != bytes(data)
    )
    assert zoo("verify", "--execute", check=True).returncode == 0
    text = zoo("export", "tiny", "--random-weights", "--out", str(zoo.out)).stdout  # shown in the stage table too
    assert "cached" in text


def test_cache_directory_with_foreign_files_is_used_but_never_cleaned(zoo: Zoo, tmp_path):
    """--cache pointing at a directory zoo did not create: nothing in it is deleted, even
    directories whose names look like a dead process's work."""
    cache = tmp_path / "mine"
    keep = [
        cache / "tmp" / "2024-taxes",
        cache / "staging" / "1999-photos",
        cache / "tmp" / "zoo-999999-x-y",
        cache / "notes.txt",
    ]
    for path in keep[:3]:
        path.mkdir(parents=True)
        (path / "file").write_text("precious")
    keep[3].write_text("precious")
    _export(zoo, "--cache", str(cache))
    assert all(p.exists() for p in keep)
    assert not (cache / "CACHEDIR.TAG").exists()


def test_a_cache_zoo_created_is_tagged_and_cleans_only_its_own_dead_work(zoo: Zoo):
    _export(zoo)
    assert (zoo.cache / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    dead = zoo.cache / "tmp" / "zoo-999999-convert-abc"  # no such process
    foreign = zoo.cache / "tmp" / "999999-taxes"
    for path in (dead, foreign):
        path.mkdir(parents=True)
    _export(zoo, "--seed", "1")
    assert not dead.exists() and foreign.exists()
    assert len(Registry(zoo.registry).exports()) == 2


def test_exported_directories_are_readable_like_other_output(zoo: Zoo):
    report = _export(zoo)
    mode = Path(report["path"]).stat().st_mode & 0o777
    assert mode & 0o055 == 0o055  # group and others may read and enter (mkdtemp alone gives 0700)


# ------------------------------------------------------------------------------ the registry, validated on read
GOOD = """schema = 1

[[exports]]
id = "tiny-fp32-1"
model = "tiny"
status = "valid"
created_at = "2026-01-01T00:00:00+00:00"
path = "exports/tiny-fp32-1"
variant = {name = "fp32", precision = "fp32", target = "iOS17", options = {}}
components = [{name = "vocoder", path = "vocoder.mlpackage", sha256 = "00", bytes = 1}]
"""

BROKEN = {
    "only an id": 'schema = 1\n\n[[exports]]\nid = "x"\n',
    "cut after created_at": 'schema = 1\n\n[[exports]]\nid = "x"\nmodel = "tiny"\nstatus = "valid"\ncreated_at = '
    '"2026"\n',
    "duplicate ids": GOOD + GOOD.split("\n", 2)[2],
    "traversal": GOOD.replace('path = "vocoder.mlpackage"', 'path = "../../../etc"'),
    "absolute path": GOOD.replace('path = "vocoder.mlpackage"', 'path = "/etc/hostname"'),
    "an integer id": GOOD.replace('id = "tiny-fp32-1"', "id = 5"),
    "no model": GOOD.replace('model = "tiny"\n', ""),
}


@pytest.mark.parametrize("case", sorted(BROKEN) + ["not utf-8"])
def test_broken_registry_is_refused_by_every_command_and_left_byte_identical(zoo: Zoo, case):
    data = b"schema = 1\n# \xff\xfe\n" if case == "not utf-8" else BROKEN[case].encode()
    zoo.registry.write_bytes(data)
    for args in (
        ("list",),
        ("verify",),
        ("run", "tiny", "hi", "-o", str(zoo.workdir / "a.wav"), "--backend", "mil"),
        ("export", "tiny", "--random-weights", "--out", str(zoo.out)),
    ):
        proc = zoo(*args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        message = " ".join(proc.stderr.split())
        assert str(zoo.registry.name) in message and (
            "export x" in message or "export tiny-fp32-1" in message or "export #1" in message or "UTF-8" in message
        ), (args, message)
        assert "Traceback" not in proc.stderr
    for args in (("list", "--json"), ("info", "tiny"), ("info", "tiny", "--json")):  # machines and humans alike
        proc = zoo(*args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert str(zoo.registry.name) in (proc.stderr + proc.stdout), args
    assert zoo.registry.read_bytes() == data  # never rewritten
    assert not zoo.packages()
    assert "tiny" in zoo("list").stdout  # plugins are still listed


def test_paths_in_an_entry_cannot_escape_its_export_even_through_a_link(zoo: Zoo, tmp_path):
    report = json.loads(zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), "--json", check=True).stdout)
    root = Path(report["path"])
    outside = tmp_path / "outside.mlpackage"
    outside.mkdir()
    text = zoo.registry.read_text().replace('path = "vocoder.mlpackage"', 'path = "escape.mlpackage"')
    (root / "escape.mlpackage").symlink_to(outside)
    zoo.registry.write_text(text)
    for args in (
        ("verify",),
        ("verify", "--execute"),
        ("run", "tiny", "hi", "-o", str(zoo.workdir / "a.wav"), "--backend", "mil"),
    ):
        proc = zoo(*args)
        said = " ".join((proc.stderr + proc.stdout).split())
        assert proc.returncode == 1 and (
            "leads outside its directory" in said or "symbolic links leading out of it" in said
        ), (args, said)


# ------------------------------------------------------------------------------ what zoo deletes
def _dead_pid() -> int:
    import subprocess
    import sys

    return int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )


def test_a_marker_naming_another_id_inside_a_registered_export_deletes_nothing(zoo: Zoo):
    first = _export(zoo)
    marker = Path(first["path"]) / ".zoo-pending.json"
    marker.write_text(json.dumps({"id": "tiny-fp32-someone-else", "pid": _dead_pid(), "registry": str(zoo.registry)}))
    second = zoo("export", "tiny", "--random-weights", "--seed", "1", "--out", str(zoo.out), "--json", check=True)
    assert Path(first["path"]).is_dir() and len(zoo.packages()) == 4
    assert any("names another export" in w for w in json.loads(second.stdout)["warnings"])
    assert zoo("verify", check=True).returncode == 0


def test_an_export_registered_in_another_registry_survives_an_export_into_the_same_out(zoo: Zoo):
    """A kill between the registry write and the marker's removal leaves a marker in a registered
    export; an export with another --registry into the same --out must not delete it."""
    first = _export(zoo)
    root = Path(first["path"])
    (root / ".zoo-pending.json").write_text(
        json.dumps({"id": root.name, "pid": _dead_pid(), "registry": str(zoo.registry)})
    )
    other = zoo.workdir / "other.toml"
    zoo("--registry", str(other), "export", "tiny", "--random-weights", "--out", str(zoo.out), check=True)
    assert root.is_dir() and not (root / ".zoo-pending.json").exists()  # registered: only the marker goes
    assert zoo("verify", check=True).returncode == 0


@pytest.mark.parametrize("marker", ['{"id": "x", "pid": "abc", "registry": "r"}', "[1, 2]", "null", "{not json"])
def test_malformed_markers_are_skipped_with_a_warning(zoo: Zoo, marker):
    stray = zoo.out / "x"
    stray.mkdir(parents=True)
    (stray / ".zoo-pending.json").write_text(marker)
    report = _export(zoo)
    assert stray.is_dir() and report["ok"]
    assert any(str(stray) in w for w in report["warnings"])


def test_an_orphaned_export_is_shown_by_list_and_verify(zoo: Zoo):
    orphan = zoo.out / "tiny-fp32-orphan"
    (orphan / "encoder.mlpackage").mkdir(parents=True)
    (orphan / ".zoo-pending.json").write_text(
        json.dumps({"id": orphan.name, "pid": _dead_pid(), "registry": str(zoo.registry)})
    )
    _export(zoo, "--out", str(zoo.workdir / "elsewhere"))  # another --out: the orphan stays
    assert orphan.is_dir()
    assert str(orphan) in json.loads(zoo("list", "--json").stdout)["orphans"] or orphan.name in zoo("list").stderr
    assert "orphaned export" in " ".join(zoo("verify").stderr.split())


# ------------------------------------------------------------------------------ voice WAVs
def _wav(path: Path, rate: int, seconds: float = 0.5, channels: int = 1, claim_frames: int | None = None) -> Path:
    import struct

    import numpy as np

    samples = (np.sin(np.arange(int(rate * seconds) * channels) * 0.05) * 8000).astype("<i2").tobytes()
    frames = claim_frames if claim_frames is not None else len(samples) // (2 * channels)
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + frames * 2 * channels)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    )
    path.write_bytes(header + b"data" + struct.pack("<I", frames * 2 * channels) + samples)
    return path


@pytest.mark.parametrize("rate", [1, 0, 7999, 192001])
def test_wav_with_an_absurd_rate_is_refused_naming_the_file(tmp_path, rate):
    from zoo.core.kit.audio import read_wav

    path = _wav(tmp_path / "v.wav", 8000, claim_frames=None)
    data = bytearray(path.read_bytes())
    data[24:28] = rate.to_bytes(4, "little")  # the header's sample rate
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"v\.wav.*sample rate"):
        read_wav(path, 10.0)


def test_wav_reading_is_bounded_by_the_prompt_not_the_header(tmp_path):
    """A header claiming hours of audio (or a long file): only what the prompt can use is read,
    and a prime rate resamples with memory bounded by the prompt."""
    import tracemalloc

    from zoo.core.kit.audio import read_wav, resample

    long = _wav(tmp_path / "long.wav", 48000, seconds=30)
    wav, rate = read_wav(long, 2.0)
    assert rate == 48000 and len(wav) == 2 * 48000 + 1
    claims = _wav(tmp_path / "claims.wav", 16000, seconds=1, claim_frames=10**9)  # a lying header
    wav, _ = read_wav(claims, 10.0)
    assert len(wav) == 16000
    prime = _wav(tmp_path / "prime.wav", 8009, seconds=10)
    # the peak of what this reading and resampling allocates, traced (a process-wide maxrss cannot
    # fail once a shared worker peaked higher earlier); numpy reports its buffers to tracemalloc
    tracemalloc.start()
    try:
        wav, rate = read_wav(prime, 10.0)
        out = resample(wav, rate, 24000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert abs(len(out) - 240000) <= 30
    # bytes: measured 42.7 MB (2026-12-03); a polyphase filter over 8009/24000 would ask 640 GiB
    assert peak < 200 << 20, peak


@pytest.mark.parametrize("damage", ["truncated header", "missing"])
def test_broken_wav_names_the_file(tmp_path, damage):
    from zoo.core.kit.audio import read_wav

    path = _wav(tmp_path / "v.wav", 16000)
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ValueError, match=r"v\.wav"):
        read_wav(path, 10.0)


def test_zoo_run_refuses_a_crafted_wav_with_a_message(zoo: Zoo, tmp_path):
    pytest.importorskip("pocket_tts")
    path = _wav(tmp_path / "one-hertz.wav", 16000)
    data = bytearray(path.read_bytes())
    data[24:28] = (1).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    proc = zoo(
        "run",
        "pocket_tts",
        "Hi.",
        "-o",
        str(tmp_path / "o.wav"),
        "--backend",
        "torch",
        "--random-weights",
        "--variant",
        "small-fp32",
        "--voice",
        str(path),
    )
    assert (
        proc.returncode != 0 and "one-hertz.wav" in proc.stderr and "sample rate 1 Hz" in " ".join(proc.stderr.split())
    )
    assert "Traceback" not in proc.stderr and not (tmp_path / "o.wav").exists()


def test_registry_writes_keep_its_file_mode(zoo: Zoo):
    import os

    zoo.registry.write_text("schema = 1\n")
    os.chmod(zoo.registry, 0o644)
    _export(zoo)
    assert zoo.registry.stat().st_mode & 0o777 == 0o644


def test_verify_execute_never_skips_a_component_silently(zoo: Zoo):
    """A component with no parity record cannot be executed: a problem, not 'within thresholds'."""
    import tomlkit

    _export(zoo)
    doc = tomlkit.parse(zoo.registry.read_text())
    parity = doc["exports"][0]["parity"]
    del parity[[p["name"] for p in parity].index("vocoder")]
    zoo.registry.write_text(tomlkit.dumps(doc))
    proc = zoo("verify", "--execute", "--json")
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    assert [(p["name"], "no parity inputs" in p["message"]) for p in problems] == [("vocoder", True)]


def test_stage_cache_key_covers_zoo_core_sources(monkeypatch, tmp_path):
    """An edit to zoo.core (a kernel, the default convert) must not reuse cached convert/mil verdicts."""
    from zoo.core.export import stages as stages_module
    from zoo.core.export.cache import StageCache
    from zoo.core.export.report import ExportReport, Reporter

    stages = stages_module.Stages(
        StageCache(tmp_path / "c"), ExportReport("m", "v", "w"), Reporter(), {"model": "m", "plugin": ["p", "1", "abc"]}
    )
    import shutil

    from zoo.core.util.hashing import python_sources_sha256

    monkeypatch.setattr(stages_module, "_CORE_DIGEST", None)
    digest = stages_module.core_digest()
    # the digest is of core's sources: a copy of them digests the same; one line added to a kernel
    # (a source the plugins never see) changes it, and with it every stage key
    copy = tmp_path / "core"
    shutil.copytree(Path(stages_module.__file__).parents[1], copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert python_sources_sha256(copy) == digest
    kernel = copy / "mil" / "kernels" / "elementwise.py"
    kernel.write_text(kernel.read_text(encoding="utf-8") + "\n# an edit\n", encoding="utf-8")
    edited = python_sources_sha256(copy)
    assert edited != digest
    keys = []
    for sources in (digest, edited):
        monkeypatch.setattr(stages_module, "_CORE_DIGEST", sources)
        keys.append(stages.key("convert:flowlm"))
    assert keys[0] != keys[1]


def test_reading_a_package_never_writes_to_it(zoo: Zoo):
    """coremltools' ModelPackage rewrites Manifest.json whenever a package is opened; with
    several exports reading one cached package, a copier saw a half-written manifest (CI: 'the
    copy placed in the export does not match the validated package'). zoo reads packages
    without it: a cached re-export, `verify --execute` and `run --backend mil` leave every
    byte and every mtime of the cache and the export as they were."""
    _export(zoo)

    def snapshot() -> dict[str, tuple[int, bytes]]:
        files = [
            p
            for root in (zoo.cache / "stages", zoo.out)
            for p in root.rglob("*")
            if p.is_file() and p.name != ".complete"
        ]
        return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}

    before = snapshot()
    assert any(name.endswith("Manifest.json") for name in before)
    zoo("verify", "--execute", check=True)
    zoo("run", "tiny", "hi", "--backend", "mil", "-o", str(zoo.workdir / "hi.wav"), check=True)
    _export(zoo)  # every stage cached: the mil stage re-reads nothing, the register stage copies
    after = snapshot()
    assert {k: v for k, v in after.items() if k in before} == before


def test_a_deleted_weight_file_is_named_by_verify_and_run(zoo: Zoo):
    report = _export(zoo)
    weights = sorted((Path(report["path"]) / "vocoder.mlpackage").rglob("weight.bin"))[0]
    weights.unlink()
    proc = zoo("verify", "--execute")
    message = " ".join(proc.stderr.split()) + " ".join(proc.stdout.split())
    assert proc.returncode == 1 and "missing vocoder.mlpackage/Data/com.apple.CoreML/weights/weight.bin" in message
    assert "sha256" not in message  # a missing file, not a hash mismatch
    run = zoo("run", "tiny", "hi", "-o", str(zoo.workdir / "hi.wav"), "--backend", "mil")
    text = " ".join(run.stderr.split())
    assert run.returncode == 1 and "weight.bin" in text and f"zoo verify {report['id']}" in text
    assert not (zoo.workdir / "hi.wav").exists()


def test_zoo_rm_removes_the_entry_and_only_the_files_it_lists(zoo: Zoo):
    first = _export(zoo)
    second = _export(zoo, "--force")  # identical inputs, made anew: an older duplicate
    (Path(second["path"]) / "notes.txt").write_text("mine")
    assert zoo("rm", "tiny-nope").returncode == 2
    removed = json.loads(zoo("rm", second["id"], "--json", check=True).stdout)
    assert (removed["removed"], removed["left_in_place"], removed["refused"]) == (
        [second["id"]],
        {second["id"]: ["notes.txt"]},
        {},
    )
    assert [e.id for e in Registry(zoo.registry).exports()] == [first["id"]]
    assert [p.name for p in Path(second["path"]).iterdir()] == ["notes.txt"]  # not zoo's: kept
    third = _export(zoo, "--force")
    data = json.loads(zoo("rm", "--older-duplicates", "--json", check=True).stdout)
    assert data["removed"] == [first["id"]] and not Path(first["path"]).exists()
    assert [e.id for e in Registry(zoo.registry).exports()] == [third["id"]]
    assert zoo("verify", check=True).returncode == 0


def test_verify_reports_each_step_as_progress(zoo: Zoo):
    """`zoo verify --execute` takes seconds to minutes per export: it names each hash and execution as it starts."""
    from zoo.core.registry.verify import verify

    report = _export(zoo)
    steps: list[str] = []
    entries, problems, executed = verify(Registry(zoo.registry), "", True, steps.append)
    assert not problems and len(executed) == 2
    assert (
        f"{report['id']}: executing encoder at level mil" in steps
        and f"{report['id']}: executing vocoder at level mil" in steps
    )
    assert (
        f"{report['id']}: hashing component vocoder" in steps
        and f"{report['id']}: hashing constant embeddings" in steps
    )
