"""What zoo deletes, reads and overwrites when the registry, an export or an argument is hostile.

Each test here reproduces one failure a probe of zoo found (a careless or hostile user): on the
code before these fixes every one of them failed (`zoo rm` deleted outside exports, a registry
became invalid TOML, `zoo run` spoke through tampered packages, `-o` overwrote the registry...).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib
from conftest import Zoo

from zoo.core.registry.store import Registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, tiny_site: Path) -> Path:
    """One tiny export (registry + exports/), copied into each test's own directory."""
    zoo = Zoo(tmp_path_factory.mktemp("pristine"), [tiny_site])
    zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), check=True)
    return zoo.workdir


@pytest.fixture
def made(zoo: Zoo, pristine: Path) -> tuple[Zoo, dict, Path]:
    """(zoo, the registered entry, its directory), all the test's own."""
    shutil.copytree(pristine / "exports", zoo.out, symlinks=True)
    shutil.copy2(pristine / "registry.toml", zoo.registry)
    entry = Registry(zoo.registry).exports()[0]
    return zoo, entry, zoo.workdir / entry.path


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _say(proc: subprocess.CompletedProcess) -> str:
    return " ".join((proc.stderr + proc.stdout).split())


# ------------------------------------------------------------------------------ zoo rm: only what zoo made
def _canary(tmp_path: Path, name: str = "canary") -> Path:
    """A folder zoo never made, shaped like an export (a component's name, an empty folder)."""
    canary = tmp_path / name
    (canary / "vocoder.mlpackage").mkdir(parents=True)
    (canary / "vocoder.mlpackage" / "Manifest.json").write_text("not zoo's")
    (canary / "precious.txt").write_text("keep me")
    (canary / "empty").mkdir()
    return canary


@pytest.mark.parametrize("how", ["relative ../", "absolute", "symlinked export dir", "another name in the out root"])
def test_rm_verify_and_run_refuse_an_entry_whose_path_leads_elsewhere(made, tmp_path, how):
    zoo, entry, directory = made
    canary = _canary(tmp_path)
    text = zoo.registry.read_text()
    if how == "relative ../":
        text = text.replace(f'path = "{entry.path}"', 'path = "../canary"')
    elif how == "absolute":
        text = text.replace(f'path = "{entry.path}"', f'path = "{canary}"')
    elif how == "symlinked export dir":  # exports/<id> is a link to the canary
        shutil.rmtree(directory)
        directory.symlink_to(canary)
    else:
        shutil.copytree(canary, zoo.out / "someone-else")
        canary = zoo.out / "someone-else"
        text = text.replace(f'path = "{entry.path}"', 'path = "exports/someone-else"')
    zoo.registry.write_text(text)
    before = _files(canary)
    for args in (
        ("rm", entry.id),
        ("rm", entry.id, "--json"),
        ("verify",),
        ("verify", "--execute"),
        ("run", "tiny", "hi", "-o", str(zoo.workdir / "a.wav")),
    ):
        proc = zoo(*args)
        assert proc.returncode == 1, (args, _say(proc))
        assert "symbolic link" in _say(proc) or "directly in the output root" in _say(proc), (args, _say(proc))
        assert "Traceback" not in proc.stderr and "sha256" not in _say(proc)  # refused before anything in it was read
    assert _files(canary) == before and (canary / "empty").is_dir()
    assert [e.id for e in Registry(zoo.registry).exports()] == [entry.id]  # the entry is kept
    assert not (zoo.workdir / "a.wav").exists()


@pytest.mark.parametrize("marker", ["missing", "another id", "not json"])
def test_a_directory_without_zoos_marker_is_neither_read_nor_deleted(made, marker):
    zoo, entry, directory = made
    path = directory / ".zoo-export.json"
    if marker == "missing":
        path.unlink()
    else:
        path.write_text('{"zoo_export": 1, "id": "tiny-other", "files": {}}' if marker == "another id" else "{nope")
    before = _files(directory)
    rm = zoo("rm", entry.id)
    assert rm.returncode == 1 and "zoo marker" in _say(rm) and _files(directory) == before, _say(rm)
    assert marker != "missing" or "--keep-files" in _say(rm)
    assert zoo("verify").returncode == 1 and zoo("run", "tiny", "hi", "-o", str(zoo.workdir / "a.wav")).returncode == 1
    kept = json.loads(zoo("rm", entry.id, "--keep-files", "--json", check=True).stdout)
    assert kept["removed"] == [entry.id] and kept["results"][0]["files_untouched"]
    assert _files(directory) == before and Registry(zoo.registry).exports() == []


def test_rm_deletes_only_unchanged_listed_files_and_keeps_the_users(made):
    """A user's notes, a file added inside a package, an empty folder the user made and a constant
    edited since the export are kept and named; everything else zoo placed goes, then the entry."""
    zoo, entry, directory = made
    (directory / "NOTES.txt").write_text("mine")
    (directory / "encoder.mlpackage" / "mine.bin").write_bytes(b"mine")
    (directory / "my-empty-folder").mkdir()
    constant = directory / entry.constants[0].path
    constant.write_bytes(constant.read_bytes() + b"edited")
    data = json.loads(zoo("rm", entry.id, "--json", check=True).stdout)
    assert data["removed"] == [entry.id] and Registry(zoo.registry).exports() == []
    kept = {k["path"]: k["why"] for k in data["results"][0]["kept"]}
    assert kept == {
        entry.constants[0].path: "changed since the export was made",
        "NOTES.txt": "not listed by the export",
        "encoder.mlpackage/mine.bin": "not listed by the export",
        "my-empty-folder/": "a folder zoo did not make",
    }
    left = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))
    assert left == sorted(
        [
            "NOTES.txt",
            "constants",
            entry.constants[0].path,
            "encoder.mlpackage",
            "encoder.mlpackage/mine.bin",
            "my-empty-folder",
        ]
    )


def test_rm_with_a_link_leading_out_deletes_nothing_and_keeps_the_entry(made, tmp_path):
    zoo, entry, directory = made
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"not zoo's")
    weights = sorted((directory / "vocoder.mlpackage").rglob("weight.bin"))[0]
    weights.unlink()
    weights.symlink_to(outside)
    before = {p: p.is_symlink() for p in directory.rglob("*")}
    proc = zoo("rm", entry.id)
    assert proc.returncode == 1 and "symbolic links leading out" in _say(proc) and "weight.bin" in _say(proc)
    assert {p: p.is_symlink() for p in directory.rglob("*")} == before and outside.read_bytes() == b"not zoo's"
    assert [e.id for e in Registry(zoo.registry).exports()] == [entry.id]


def test_rm_of_an_export_already_deleted_by_hand_drops_the_entry(made):
    zoo, entry, directory = made
    shutil.rmtree(directory)
    assert zoo("rm", entry.id, check=True).returncode == 0 and Registry(zoo.registry).exports() == []


# ------------------------------------------------------------------------------ registry writes
@pytest.mark.parametrize("start", ["exports = []\n", "after removing the last entry"])
def test_export_after_an_empty_inline_array_writes_valid_toml(zoo: Zoo, start):
    """The issue's repro: `exports = []` (written by hand, or by tomlkit after `zoo rm` of the
    last entry) then `zoo export` wrote `exports = [id = ...` and every command refused the file."""
    if start == "exports = []\n":
        zoo.registry.write_text("schema = 1\n" + start)
    else:
        first = json.loads(
            zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), "--json", check=True).stdout
        )
        zoo("rm", first["id"], check=True)
    zoo("export", "tiny", "--random-weights", "--seed", "1", "--out", str(zoo.out), check=True)
    data = tomllib.loads(zoo.registry.read_text())
    assert len(data["exports"]) == 1
    assert zoo("list").returncode == 0 and zoo("verify", check=True).returncode == 0


def test_a_symlinked_registry_stays_a_link_and_its_target_is_updated(made):
    zoo, entry, _ = made
    target = zoo.workdir / "real" / "registry.toml"
    target.parent.mkdir()
    text = zoo.registry.read_text().replace('"exports', '"../exports')  # paths relative to the target's folder
    target.write_text(text)
    zoo.registry.unlink()
    zoo.registry.symlink_to(target)
    zoo("export", "tiny", "--random-weights", "--seed", "1", "--out", str(zoo.out), check=True)
    assert zoo.registry.is_symlink() and len(tomllib.loads(target.read_text())["exports"]) == 2
    assert (target.parent / "registry.toml.lock").exists()  # one lock for every path to the file
    assert zoo("verify", check=True).returncode == 0


def test_a_fifo_registry_is_refused_without_blocking(zoo: Zoo):
    os.mkfifo(zoo.registry)
    for args in (("list",), ("verify",), ("export", "tiny", "--random-weights")):
        proc = zoo(*args)  # blocked forever before: open() on a FIFO waits for a writer
        assert proc.returncode == 1 and "FIFO" in _say(proc), args


def test_a_lock_that_is_a_directory_is_refused_before_any_stage(zoo: Zoo):
    Path(str(zoo.registry) + ".lock").mkdir()
    proc = zoo("export", "tiny", "--random-weights", "--out", str(zoo.out))
    assert proc.returncode == 1 and "registry.toml.lock is not a regular file" in _say(proc)
    assert "parity" not in proc.stdout + proc.stderr and not zoo.packages()  # said before any work


def test_a_relative_cache_path_exports(zoo: Zoo):
    """ZOO_CACHE=relcache failed at constants: the session joined out_dir onto a path already holding it."""
    zoo.env["ZOO_CACHE"] = "relcache"
    zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), check=True)
    assert (zoo.workdir / "relcache" / "stages").is_dir()


# ------------------------------------------------------------------------------ zoo run trusts nothing on disk
def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage", ["flipped weight byte", "stray file in a package", "garbage model.mlmodel", "flipped constant"]
)
def test_run_refuses_a_tampered_export_naming_the_file(made, damage):
    zoo, entry, directory = made
    if damage == "flipped weight byte":
        named = sorted((directory / "vocoder.mlpackage").rglob("weight.bin"))[0]
        _flip(named)
    elif damage == "stray file in a package":
        named = directory / "vocoder.mlpackage" / "stray.txt"
        named.write_text("x")
    elif damage == "garbage model.mlmodel":
        named = sorted((directory / "encoder.mlpackage").rglob("model.mlmodel"))[0]
        named.write_bytes(os.urandom(200))
    else:
        named = directory / entry.constants[0].path
        _flip(named)
    wav = zoo.workdir / "a.wav"
    proc = zoo("run", "tiny", "hi", "-o", str(wav))
    said = _say(proc)
    assert proc.returncode == 1 and f"zoo verify {entry.id}" in said, said
    assert (named.name in said or named.parent.name in said) and "Traceback" not in said and "DecodeError" not in said
    assert not wav.exists()


def test_runs_reuse_the_last_full_check_but_a_changed_byte_is_always_rehashed(made):
    """The fast path (size, mtime, ctime, inode recorded by the last full check) skips hashing an
    unchanged export; a byte flipped with the file's mtime set back is still caught (ctime moved)."""
    from zoo.core.registry.verify import intact

    zoo, entry, directory = made
    registry = Registry(zoo.registry)
    records = zoo.workdir / "verified"
    steps: list[str] = []
    assert intact(registry, entry, records, steps.append) == [] and any("hashing component vocoder" in s for s in steps)
    steps.clear()
    assert intact(registry, entry, records, steps.append) == [] and steps == []  # nothing hashed again
    weights = sorted((directory / "vocoder.mlpackage").rglob("weight.bin"))[0]
    st = weights.stat()
    _flip(weights)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    problems = intact(registry, entry, records, steps.append)
    assert [p.name for p in problems] == ["vocoder"] and "registered sha256" in problems[0].message


def test_the_interpreter_names_a_package_it_cannot_load(tmp_path):
    from zoo.core.runtime.backends import BackendUnavailable, MilRuntime

    package = tmp_path / "broken.mlpackage"
    (package / "Data" / "com.apple.CoreML").mkdir(parents=True)
    (package / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x08garbage")
    with pytest.raises(BackendUnavailable, match=r"broken\.mlpackage cannot be loaded"):
        MilRuntime({"c": package}, {})


# ------------------------------------------------------------------------------ outputs never overwrite zoo's state
@pytest.mark.parametrize("target", ["registry", "lock", "inside an export", "inside the cache", "a device"])
def test_run_output_never_overwrites_zoos_state(made, target):
    zoo, entry, directory = made
    lock = Path(str(zoo.registry) + ".lock")
    lock.touch()
    output = {
        "registry": zoo.registry,
        "lock": lock,
        "inside an export": directory / entry.constants[0].path,
        "inside the cache": zoo.cache / "x.wav",
        "a device": Path("/dev/null"),
    }[target]
    before = output.read_bytes() if output.is_file() else None
    proc = zoo("run", "tiny", "hi", "-o", str(output))
    assert proc.returncode == 2 and str(output.name) in _say(proc), _say(proc)
    assert (output.read_bytes() if output.is_file() else None) == before
    assert zoo("verify", check=True).returncode == 0


def test_run_output_in_an_unwritable_place_is_a_usage_error(made):
    zoo, _, _ = made
    proc = zoo("run", "tiny", "hi", "-o", "/proc/zoo-cannot-write-here.wav")
    assert proc.returncode == 2 and "cannot create a file in /proc" in _say(proc) and "Traceback" not in proc.stderr


def test_run_writes_aside_and_leaves_no_temporary_file(made):
    zoo, _, _ = made
    wav = zoo.workdir / "out" / "a.wav"
    zoo("run", "tiny", "hi", "-o", str(wav), check=True)
    assert wav.read_bytes()[:4] == b"RIFF" and sorted(p.name for p in wav.parent.iterdir()) == ["a.wav"]


# ----------------------------------------------------------------- bad input to zoo run: exit 2, named, early
def _wav_bytes(rate: int = 24000, samples: int = 24000, width: int = 2) -> bytes:
    import struct

    data = b"\x01\x02" * samples
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * width, width, 8 * width)
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


@pytest.mark.parametrize("damage", ["odd-length truncation", "8-bit", "not a WAV", "no samples"])
def test_a_bad_voice_wav_exits_2_before_any_model_loads(zoo: Zoo, tmp_path, damage):
    pytest.importorskip("pocket_tts")
    voice = tmp_path / "voice.wav"
    data = (
        _wav_bytes(width=1) if damage == "8-bit" else _wav_bytes(samples=0) if damage == "no samples" else _wav_bytes()
    )
    voice.write_bytes(
        data[:1001]
        if damage == "odd-length truncation"
        else b"hello, not audio" * 10
        if damage == "not a WAV"
        else data
    )
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
        str(voice),
    )
    assert proc.returncode == 2 and "voice.wav" in _say(proc) and "Traceback" not in proc.stderr, _say(proc)
    assert not (tmp_path / "o.wav").exists()


def test_text_that_is_not_utf8_is_refused_by_position(made):
    zoo, _, _ = made
    proc = zoo(
        "run", "tiny", "hello \udcff\udcfe", "-o", str(zoo.workdir / "a.wav")
    )  # the bytes 0xff 0xfe on the command line
    assert (
        proc.returncode == 2
        and "line 1, column 7" in _say(proc)
        and "0xff" in _say(proc)
        and "Traceback" not in proc.stderr
    )


def test_text_from_a_file_or_standard_input(made):
    zoo, _, _ = made
    bad = zoo.workdir / "bad.txt"
    bad.write_bytes(b"first line\nsec\xffond\n")
    proc = zoo("run", "tiny", "--text-file", str(bad), "-o", str(zoo.workdir / "a.wav"))
    assert proc.returncode == 2 and "line 2, column 4" in _say(proc) and "bad.txt" in _say(proc)
    good = zoo.workdir / "good.txt"
    good.write_text("Hello there. " * 2000)  # 26 KB: longer than any shell makes comfortable
    data = json.loads(
        zoo("run", "tiny", "--text-file", str(good), "-o", str(zoo.workdir / "a.wav"), "--json", check=True).stdout
    )
    assert data["frames"] > 0
    piped = subprocess.run(
        zoo.argv("run", "tiny", "--text-file", "-", "-o", str(zoo.workdir / "b.wav")),
        input=b"Hi from stdin.",
        cwd=zoo.workdir,
        env=zoo.env,
        capture_output=True,
    )
    assert piped.returncode == 0 and (zoo.workdir / "b.wav").is_file()
    both = zoo("run", "tiny", "hi", "--text-file", str(good), "-o", str(zoo.workdir / "c.wav"))
    neither = zoo("run", "tiny", "-o", str(zoo.workdir / "c.wav"))
    assert both.returncode == neither.returncode == 2 and "--text-file" in _say(both) + _say(neither)


def test_text_file_limits(tmp_path):
    from zoo.core.plugin.errors import UsageError
    from zoo.core.run.speak import MAX_TEXT_BYTES, read_text_file

    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (1 << 20))
    assert len(read_text_file(str(big))) == 1 << 20  # 1 MB: the E2BIG the command line gave
    with open(big, "ab") as f:
        f.truncate(MAX_TEXT_BYTES + 1)
    with pytest.raises(UsageError, match="longer than"):
        read_text_file(str(big))
    with pytest.raises(UsageError, match="is a directory"):
        read_text_file(str(tmp_path))


# ------------------------------------------------------------------------------ rough edges
def test_a_full_disk_while_placing_an_export_is_one_line_and_leaves_nothing(tiny_site, monkeypatch, tmp_path):
    import errno

    monkeypatch.syspath_prepend(str(tiny_site))
    from zoo.core.export import cache as cache_module
    from zoo.core.export import publish as publish_module
    from zoo.core.export.cache import StageCache
    from zoo.core.export.pipeline import Exporter
    from zoo.core.export.report import ExportFailed
    from zoo.core.host.plugins import PluginHost
    from zoo.core.plugin.spec import WeightsSource

    def full(src, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(cache_module, "same_filesystem", lambda a, b: False)  # stage in <out>/.zoo-staging
    monkeypatch.setattr(publish_module.shutil, "copy2", full)
    out = tmp_path / "out"
    exporter = Exporter(
        PluginHost(),
        "tiny",
        None,
        WeightsSource.random(0),
        out,
        Registry(tmp_path / "registry.toml"),
        StageCache(tmp_path / "cache"),
    )
    with pytest.raises(ExportFailed) as failed:
        exporter.run()
    message = failed.value.report.error
    assert (
        "No space left on device" in message
        and "free space there or choose another --out" in message
        and "[(" not in message
    )
    assert "\n" not in message and list(out.iterdir()) == [] and not (tmp_path / "registry.toml").exists()


def test_a_full_disk_in_the_stage_cache_names_the_cache(tmp_path):
    import errno

    from zoo.core.export.cache import StageCache

    def build(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=r"no space left writing .* in the stage cache .*--cache / ZOO_CACHE"):
        StageCache(tmp_path / "c").put("k" * 64, build)


def test_hashing_local_weights_reports_progress(tmp_path):
    from zoo.core.export.stages import weights_identity
    from zoo.core.plugin.spec import WeightsSource

    for i in range(3):
        (tmp_path / f"w{i}.bin").write_bytes(os.urandom(1000))
    notes: list[str] = []
    ident = weights_identity(WeightsSource.local(tmp_path), notes.append)
    assert len(ident["sha256"]) == 64 and notes and "3/3 files" in notes[-1] and str(tmp_path) in notes[-1]


def test_the_registry_is_parsed_once_while_unchanged(tmp_path, monkeypatch):
    from zoo.core.registry import store as registry_module

    reg = Registry(tmp_path / "registry.toml")
    reg.add(
        {
            "id": "m-1",
            "model": "m",
            "status": "valid",
            "created_at": "2026",
            "path": "exports/m-1",
            "variant": {"name": "fp32"},
            "components": [],
        }
    )
    calls = []
    real = registry_module.tomllib.loads
    monkeypatch.setattr(registry_module.tomllib, "loads", lambda text: calls.append(1) or real(text))
    for _ in range(5):
        assert [e.id for e in reg.exports()] == ["m-1"]
    assert len(calls) == 1
    assert registry_module.tomllib.__name__ == "tomli"  # the compiled parser (pyproject: tomli>=2.2)


def test_an_entry_recording_no_output_root_must_lie_below_the_registrys_folder(made, tmp_path):
    zoo, entry, directory = made
    text = zoo.registry.read_text().replace('out = "exports"\n', "")
    zoo.registry.write_text(text)
    assert zoo("verify", check=True).returncode == 0  # exports/<id> below the registry's folder, with its marker
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere" / entry.id
    shutil.copytree(directory, elsewhere)
    zoo.registry.write_text(text.replace(f'path = "{entry.path}"', f'path = "{elsewhere}"'))
    proc = zoo("rm", entry.id)
    assert proc.returncode == 1 and "below the registry's folder" in _say(proc) and elsewhere.is_dir()
