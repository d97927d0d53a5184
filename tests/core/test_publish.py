"""`zoo publish ID` and `zoo verify DIR`: a folder to ship, described by a manifest read from the files
(validated against the schema shipped in the repository), and checked on its own, with no registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from conftest import Zoo

from zoo.core.coreml.tools import load_package_spec
from zoo.core.registry.store import Registry
from zoo.core.release.manifest import SCHEMA_FILE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, tiny_site: Path) -> tuple[Zoo, Path, dict]:
    """One tiny export, published once: (zoo, the folder, its manifest)."""
    zoo = Zoo(tmp_path_factory.mktemp("publish"), [tiny_site])
    zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), check=True)
    entry = Registry(zoo.registry).exports()[0]
    folder = zoo.workdir / "shipped"
    proc = zoo("publish", entry.id, "--dir", str(folder), "--json", check=True)
    assert "random weights" in proc.stderr.replace("\n", " ")
    return zoo, folder, json.loads(proc.stdout)


def copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_manifest_validates_and_describes_what_the_packages_declare(published):
    zoo, folder, manifest = published
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(manifest, schema)
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    entry = Registry(zoo.registry).exports()[0]
    assert manifest["export_id"] == entry.id and manifest["model"] == "tiny" and manifest["weights"]["random"]
    assert set(manifest["packages"]) == {c.name for c in entry.components}
    for name, package in manifest["packages"].items():  # the I/O coremltools reads from each spec
        spec = load_package_spec(folder / package["path"])
        described = {f.name: f for f in spec.description.functions} or {"main": spec.description}
        assert set(package["functions"]) == set(described)
        for fname, fn in described.items():
            assert [i["name"] for i in package["functions"][fname]["inputs"]] == [x.name for x in fn.input]
            assert [o["name"] for o in package["functions"][fname]["outputs"]] == [x.name for x in fn.output]
            for got, feature in zip(package["functions"][fname]["inputs"], fn.input):
                assert got["shape"] == list(feature.type.multiArrayType.shape)
        assert package["spec_version"] == spec.specificationVersion
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    # a schema that would accept anything proves nothing: a wrong manifest is refused
    broken = {**manifest, "files": [{"path": "../escape", "bytes": 1, "sha256": "0" * 64}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_verify_folder_passes_then_names_each_difference(published, tmp_path):
    zoo, folder, manifest = published
    ok = zoo("verify", str(folder), "--json", check=True)
    assert json.loads(ok.stdout)["ok"]
    big = max(manifest["files"], key=lambda f: f["bytes"])["path"]
    small = min(manifest["files"], key=lambda f: f["bytes"])["path"]
    for change, words in (
        (
            lambda d: (d / big).write_bytes(bytes([(d / big).read_bytes()[0] ^ 1]) + (d / big).read_bytes()[1:]),
            "changed",
        ),
        (lambda d: (d / small).unlink(), "missing"),
        (lambda d: (d / "stray.txt").write_text("mine"), "stray"),
    ):
        target = copy(folder, tmp_path)
        change(target)
        proc = zoo("verify", str(target))
        assert proc.returncode == 1 and words in proc.stdout, (words, proc.stdout, proc.stderr)
        shutil.rmtree(target)


def test_publish_refuses_and_leaves_nothing(published, tmp_path):
    zoo, folder, _ = published
    entry = Registry(zoo.registry).exports()[0]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("mine")
    refused = zoo("publish", entry.id, "--dir", str(taken))
    assert refused.returncode == 2 and "not an empty directory" in refused.stderr
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]
    assert zoo("publish", "no-such-id", "--dir", str(tmp_path / "x")).returncode == 2
    assert not (tmp_path / "x").exists()
    # zoo's own state is no place for a published folder: `zoo rm` or a cache clean would delete it
    for inside in (zoo.workdir / entry.path / "shipped", zoo.cache / "shipped"):
        owned = zoo("publish", entry.id, "--dir", str(inside))
        assert owned.returncode == 2 and "lies inside" in owned.stderr and not inside.exists(), owned.stderr
    # an export whose files changed is not published: zoo verify's verdict first, nothing written
    package = next(p for p in (zoo.workdir / entry.path).rglob("weight.bin"))
    saved = package.read_bytes()
    try:
        package.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
        bad = zoo("publish", entry.id, "--dir", str(tmp_path / "y"))
        assert bad.returncode == 1 and "nothing was published" in bad.stderr
        assert not (tmp_path / "y").exists() and not list(tmp_path.glob(".y.*"))
    finally:
        package.write_bytes(saved)


def test_verify_folder_execute_runs_the_packages_from_the_folder_alone(published, tmp_path):
    """--execute runs each package on the parity inputs the folder carries (no registry, no export
    directory), judged by the thresholds its manifest records: it passes as published, and fails
    once those thresholds are made impossible (the judgement is real, not a formality)."""
    zoo, folder, manifest = published
    target = copy(folder, tmp_path)
    shutil.move(str(zoo.registry), str(tmp_path / "registry.away"))  # the folder alone
    try:
        ran = json.loads(zoo("verify", str(target), "--execute", "--json", check=True).stdout)
        assert ran["ok"] and ran["executed"] and all(c["status"] == "passed" for c in ran["executed"])
        assert {c["component"] for c in ran["executed"]} == set(manifest["packages"])
        record = json.loads((target / "manifest.json").read_text())
        impossible = {"rel": -1.0, "max_abs": -1.0, "cosine_min": 2.0, "snr_db_min": 1e9}
        for v in record["validation"]:
            if v["level"] == "mil" and v.get("metric") in impossible:
                v["threshold"] = impossible[v["metric"]]
        (target / "manifest.json").write_text(json.dumps(record))
        failed = zoo("verify", str(target), "--execute")
        assert failed.returncode == 1 and "fails parity" in failed.stdout, failed.stdout
    finally:
        shutil.move(str(tmp_path / "registry.away"), str(zoo.registry))


def test_card_says_what_the_registry_says(published):
    """The model card: front matter, the random-weights banner first, and a validation table whose every
    row is the registry's record (each figure parsed back equals the recorded value to 6 digits)."""
    import yaml

    zoo, folder, manifest = published
    card = (folder / "README.md").read_text()
    assert "README.md" in {f["path"] for f in manifest["files"]}
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "coreml" and "coreml" in meta["tags"] and meta["license"]
    assert body.lstrip().startswith("> **Not a usable model.**")
    entry = Registry(zoo.registry).exports()[0]
    table = body.split("## Validation", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in table.splitlines() if line.startswith("| ")]
    rows = rows[2:]  # header and rule
    assert len(rows) == len(entry.validation) > 0
    for row, record in zip(rows, entry.validation):
        level, component, metric, value, bound, status = row[:6]
        assert (level, component, metric, status) == (
            record["level"],
            record["component"],
            record.get("metric", ""),
            record["status"],
        )
        for shown, recorded in ((value, record.get("value")), (bound, record.get("threshold"))):
            if isinstance(recorded, float):
                assert float(shown) == pytest.approx(recorded, rel=1e-5), (shown, recorded)
    for name, package in manifest["packages"].items():
        assert f"| `{name}` |" in body and package["needs"] in body


def test_the_loop_contract_is_the_plugins_in_the_manifest_and_on_the_card(published, tiny_site, monkeypatch):
    """manifest.json's loop is the plugin's contract for these constants, and the card renders it: each
    call with every input's source and every output's use."""
    import importlib

    zoo, folder, manifest = published
    monkeypatch.syspath_prepend(str(tiny_site))
    loop = manifest["loop"]
    assert loop is not None and loop["front_end"]["kind"] == "bytes"
    tiny = importlib.import_module("zoo_tiny")
    constants = {name: folder / c["path"] for name, c in manifest["constants"].items()}
    model = tiny.zoo_register_models()[0]
    assert loop == json.loads(json.dumps(tiny.loop_contract(model, constants).as_dict()))
    card = (folder / "README.md").read_text()
    section = card.split("### What a native app implements", 1)[1].split("\n## ", 1)[0]
    for call in ("`encoder.main`", "`vocoder.main`"):
        assert call in section
    for feed in ("`emb` ← text", "`hidden` ← output"):
        assert feed in section
    assert "for each chunk of 8 bytes" in section and "for each position" in section


def test_a_package_needing_a_later_target_than_its_variant_is_refused():
    """The target on the card comes from the packages: an iOS18 package (states, grouped tables,
    multifunction) in a variant declared iOS17 is an export error, named."""
    from zoo.core.registry.entry import ExportEntry
    from zoo.core.release.manifest import ManifestError, check_target

    entry = ExportEntry.from_table(
        {
            "id": "m-fp16-x",
            "model": "m",
            "validation_level": "mil",
            "created_at": "2026-12-03T00:00:00Z",
            "path": "m-fp16-x",
            "plugin": {"name": "p", "version": "1"},
            "variant": {"name": "fp16", "precision": "fp16", "target": "iOS17"},
            "weights": {"kind": "random"},
            "tools": {},
            "components": [],
        }
    )
    check_target(entry, {"lm": {"spec_version": 8, "needs": "iOS17"}})  # what it declares: fine
    with pytest.raises(ManifestError, match="needs iOS18 .* declares iOS17"):
        check_target(entry, {"lm": {"spec_version": 9, "needs": "iOS18"}})


def test_the_export_checks_each_package_against_its_declared_target(published):
    """The same rule at export time (after conversion and after compression), read from the saved
    package; and a model declaring a multifunction component in a pre-iOS18 variant is refused."""
    from zoo.core import ComponentSpec, ModelSpec, Variant
    from zoo.core.coreml.tools import target_problem

    _, folder, manifest = published
    for name, package in manifest["packages"].items():
        path = folder / package["path"]
        assert target_problem(path, "iOS17", name) == "" and target_problem(path, "iOS18") == ""
        assert "needs iOS17 (CoreML specification 8) but the variant declares iOS16" in target_problem(path, "iOS16")
    two = (ComponentSpec("lm", "x", functions=("prefill", "step")),)
    ModelSpec("m", "m", {"a": Variant("a", "fp16", "iOS18")}, "a", two)  # fine
    with pytest.raises(ValueError, match="several functions .* declares iOS17"):
        ModelSpec("m", "m", {"a": Variant("a", "fp16", "iOS17")}, "a", two)


def test_push_refuses_random_weights_lists_with_dry_run_and_fails_offline_sending_nothing(published, tmp_path):
    zoo, _, manifest = published
    entry = Registry(zoo.registry).exports()[0]
    refused = zoo("publish", entry.id, "--dir", str(tmp_path / "a"), "--push", "me/tiny")
    assert refused.returncode == 2 and "random weights" in refused.stderr and not (tmp_path / "a").exists()
    assert zoo("publish", entry.id, "--dir", str(tmp_path / "b"), "--dry-run").returncode == 2  # needs --push

    dry = zoo(
        "publish",
        entry.id,
        "--dir",
        str(tmp_path / "c"),
        "--push",
        "me/tiny",
        "--allow-random-weights",
        "--dry-run",
        check=True,
    )
    listed = dry.stderr
    for f in manifest["files"]:
        assert f["path"] in listed
    assert f"would upload {len(manifest['files']) + 1} files" in listed

    saved = dict(zoo.env)
    zoo.env.update(HF_HUB_OFFLINE="1", HF_TOKEN="hf_not_a_token")
    try:
        offline = zoo("publish", entry.id, "--dir", str(tmp_path / "d"), "--push", "me/tiny", "--allow-random-weights")
    finally:
        zoo.env.clear()
        zoo.env.update(saved)
    assert offline.returncode == 1 and "nothing was uploaded" in offline.stderr.replace("\n", " "), offline.stderr


def test_the_card_pictures_are_drawn_from_the_records_and_listed(published):
    """The spectrograms: the reference's audio (recorded) beside the published package's (run from the
    folder by the MIL interpreter) with their difference; a PNG the card embeds and the manifest hashes."""
    import re

    import numpy as np

    from zoo.core.mil import MilProgram
    from zoo.core.release.figures import audio_case

    zoo, folder, manifest = published
    picture = folder / "figures" / "spectrograms.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size < 200_000
    assert "figures/spectrograms.png" in {f["path"] for f in manifest["files"]}
    card = (folder / "README.md").read_text()
    assert "![spectrograms" in card and "(figures/spectrograms.png)" in card
    name, case = audio_case(folder, manifest)
    got = MilProgram.load(folder / manifest["packages"][name]["path"]).run_fresh(
        case.inputs, case.function, case.states
    )
    want = np.asarray(case.outputs["audio"], np.float64).reshape(-1)
    err = np.asarray(got["audio"], np.float64).reshape(-1) - want
    snr = 10 * np.log10(np.sum(want**2) / max(np.sum(err**2), 1e-300))
    shown = float(re.search(r"SNR (-?[\d.]+|inf) dB\.", card).group(1))
    assert shown == pytest.approx(snr, abs=0.05)


def test_compression_and_eval_pictures_come_from_the_registry_records(tmp_path):
    """A compressed export's bits per weight and output SNR against its gate, and zoo eval's rate per
    prompt, drawn from the entry's records; an export without them gets neither picture."""
    from zoo.core.registry.entry import ExportEntry, Item
    from zoo.core.release.card import model_card
    from zoo.core.release.figures import compression, evaluation

    def item(name, record):
        return Item(name, f"{name}.mlpackage", "0" * 64, 10, compression=record)

    entry = ExportEntry(
        id="m-fp16-mixed-x",
        model="m",
        validation_level="mil",
        created_at="2026-12-04T00:00:00Z",
        path="m",
        plugin={"name": "p", "version": "1"},
        variant={"name": "fp16-mixed", "precision": "fp16", "target": "iOS18", "compression": "mixed"},
        weights={"kind": "local"},
        tools={},
        components=[
            item("lm", {"mode": "mixed", "compressed_weights": 3, "bits": {"a": 4, "b": 6, "c": 4}}),
            item("dec", {"mode": "w8", "compressed_weights": 2}),
        ],
        validation=[
            {
                "level": "mil",
                "component": "lm",
                "metric": "snr_db_min",
                "value": 21.5,
                "threshold": 18.0,
                "status": "passed",
            },
            {
                "level": "mil",
                "component": "dec",
                "metric": "snr_db_min",
                "value": 30.0,
                "threshold": 25.0,
                "status": "passed",
            },
        ],
        eval=[
            {
                "asr_sha256": "0" * 64,
                "prompts": 2,
                "backend": "mil",
                "per_prompt": [
                    {"id": "1:a", "metric": "wer", "export_rate": 0.1, "reference_rate": 0.0},
                    {"id": "2:j", "metric": "cer", "export_rate": 0.05, "reference_rate": 0.05},
                ],
            }
        ],
    )
    (tmp_path / "figures").mkdir()
    drawn = [compression(tmp_path, entry), evaluation(tmp_path, entry)]
    assert all(f is not None and (tmp_path / f.path).read_bytes()[:4] == b"\x89PNG" for f in drawn)
    manifest = {"packages": {}, "zoo_version": "0", "weights": {"files": {}}, "variant": entry.variant, "loop": None}
    card = model_card(entry, manifest, None, drawn)
    assert "(figures/compression.png)" in card and "(figures/eval.png)" in card
    bare = ExportEntry(**{**entry.__dict__, "components": [item("lm", None)], "eval": []})
    assert compression(tmp_path, bare) is None and evaluation(tmp_path, bare) is None


def test_the_weights_license_files_are_published_beside_the_packages(tmp_path, tiny_site, monkeypatch):
    """Local weights in hub layout with a LICENSE and a NOTICE: both copied into upstream/, hashed in the
    manifest and linked from the card; an unrelated file beside them is not. Random weights: none, and
    the card says why."""
    pytest.importorskip("torch")
    from safetensors.torch import save_file

    monkeypatch.syspath_prepend(str(tiny_site))
    from zoo_tiny.reference import TinyTTS

    weights = tmp_path / "weights"
    weights.mkdir()
    save_file(TinyTTS().state_dict(), str(weights / "model.safetensors"))
    (weights / "LICENSE").write_text("Apache License 2.0 (test)\n")
    (weights / "NOTICE.md").write_text("Made by the test.\n")
    (weights / "notes.txt").write_text("not a notice\n")
    (tmp_path / "z").mkdir()
    zoo = Zoo(tmp_path / "z", [tiny_site])
    zoo("export", "tiny", "--weights", str(weights), "--out", str(zoo.out), check=True)
    entry = Registry(zoo.registry).exports()[0]
    folder = tmp_path / "shipped"
    manifest = json.loads(zoo("publish", entry.id, "--dir", str(folder), "--json", check=True).stdout)
    assert manifest["notices"]["files"] == ["upstream/LICENSE", "upstream/NOTICE.md"]
    assert (folder / "upstream" / "LICENSE").read_text() == "Apache License 2.0 (test)\n"
    assert not (folder / "upstream" / "notes.txt").exists()
    listed = {f["path"] for f in manifest["files"]}
    assert {"upstream/LICENSE", "upstream/NOTICE.md"} <= listed
    card = (folder / "README.md").read_text()
    assert "[`upstream/LICENSE`](upstream/LICENSE)" in card
    assert json.loads(zoo("verify", str(folder), "--json", check=True).stdout)["ok"]


def test_random_weights_publish_no_notice_and_say_why(published):
    _, folder, manifest = published
    assert manifest["notices"]["files"] == [] and "random weights" in manifest["notices"]["missing"]
    assert not (folder / "upstream").exists()
    assert "license: random weights" in (folder / "README.md").read_text()
