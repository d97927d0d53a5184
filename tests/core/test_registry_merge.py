"""`zoo registry merge`: registries written on two machines combined into one — identical exports once,
files kept where they are and verified, one id naming two different exports refused with both sources
named and the target unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tomlkit
from conftest import Zoo

from zoo.core.registry.store import Registry

pytestmark = pytest.mark.slow


def export(zoo: Zoo, variant: str) -> str:
    report = json.loads(
        zoo(
            "export", "tiny", "--random-weights", "--variant", variant, "--out", str(zoo.out), "--json", check=True
        ).stdout
    )
    return report["id"]


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory, tiny_site: Path):
    """Two "machines" (registries with their own output roots): both exported tiny fp32 from identical
    inputs; the second also fp16."""
    a = Zoo(tmp_path_factory.mktemp("a"), [tiny_site])
    b = Zoo(tmp_path_factory.mktemp("b"), [tiny_site])
    shared_a, shared_b, other = export(a, "fp32"), export(b, "fp32"), export(b, "fp16")
    return a, b, shared_a, shared_b, other


def snapshot(tmp_path: Path, zoo: Zoo) -> Path:
    """A copy of a machine's registry and exports (each test merges its own copies)."""
    target = tmp_path / zoo.workdir.name
    shutil.copytree(zoo.workdir, target, ignore=shutil.ignore_patterns("cache"))
    return target / zoo.registry.name


def test_identical_exports_appear_once_and_every_merged_export_verifies(machines, tmp_path, tiny_site):
    a, b, shared_a, shared_b, other = machines
    ra, rb = snapshot(tmp_path, a), snapshot(tmp_path, b)
    into = tmp_path / "merged" / "registry.toml"
    zoo = Zoo(tmp_path, [tiny_site])
    result = json.loads(zoo("registry", "merge", str(ra), str(rb), "--into", str(into), "--json", check=True).stdout)
    assert [r["id"] for r in result["added"]] == [shared_a, other]
    assert result["duplicates"] == [{"id": shared_b, "kept": shared_a, "source": str(rb)}]
    merged = Registry(into).exports()
    assert [e.id for e in merged] == [shared_a, other]
    # the files stayed where each machine wrote them; the target reaches and verifies them
    zoo.env["ZOO_REGISTRY"] = str(into)
    verified = json.loads(zoo("verify", "--json", check=True).stdout)
    assert verified["ok"] and set(verified["checked"]) == {shared_a, other}
    # merging again adds nothing (everything is there)
    again = json.loads(zoo("registry", "merge", str(ra), str(rb), "--into", str(into), "--json", check=True).stdout)
    assert again["added"] == [] and len(again["duplicates"]) == 3


def test_a_conflicting_id_refuses_the_merge_naming_both_sources(machines, tmp_path, tiny_site):
    """Machine b's fp16 export renamed to machine a's fp32 id (directory, marker and entry alike): the
    same id for two different exports. The merge names both registries and writes nothing."""
    a, b, shared_a, _, other = machines
    ra, rb = snapshot(tmp_path, a), snapshot(tmp_path, b)
    doc = tomlkit.parse(rb.read_text())
    entry = next(e for e in doc["exports"] if e["id"] == other)
    old_dir = rb.parent / entry["path"]
    new_dir = old_dir.with_name(shared_a)
    old_dir.rename(new_dir)
    marker = json.loads((new_dir / ".zoo-export.json").read_text())
    (new_dir / ".zoo-export.json").write_text(json.dumps({**marker, "id": shared_a}))
    entry["id"], entry["path"] = shared_a, str(Path(entry["path"]).with_name(shared_a))
    doc["exports"] = [e for e in doc["exports"] if e["id"] == shared_a and e["path"] == entry["path"]]
    rb.write_text(tomlkit.dumps(doc))
    into = tmp_path / "merged" / "registry.toml"
    zoo = Zoo(tmp_path, [tiny_site])
    zoo("registry", "merge", str(ra), "--into", str(into), check=True)
    before = into.read_bytes()
    refused = zoo("registry", "merge", str(rb), "--into", str(into))
    assert refused.returncode == 1, refused.stderr
    message = refused.stderr.replace("\n", " ")
    assert shared_a in message and str(into) in message and str(rb) in message and "nothing was merged" in message
    assert into.read_bytes() == before


def test_a_damaged_export_is_refused_unless_no_verify_and_a_missing_one_always(machines, tmp_path, tiny_site):
    a, _, shared_a, _, _ = machines
    ra = snapshot(tmp_path, a)
    entry = Registry(ra).exports()[0]
    weight = next((ra.parent / entry.path).rglob("weight.bin"))
    weight.write_bytes(weight.read_bytes()[:-1] + bytes([weight.read_bytes()[-1] ^ 1]))
    into = tmp_path / "merged" / "registry.toml"
    zoo = Zoo(tmp_path, [tiny_site])
    refused = zoo("registry", "merge", str(ra), "--into", str(into))
    assert refused.returncode == 1 and "fails `zoo verify`" in refused.stderr.replace("\n", " ")
    assert not into.exists()
    zoo("registry", "merge", str(ra), "--into", str(into), "--no-verify", check=True)
    assert [e.id for e in Registry(into).exports()] == [shared_a]
    shutil.rmtree(ra.parent / entry.path)
    gone = zoo("registry", "merge", str(ra), "--into", str(tmp_path / "other.toml"), "--no-verify")
    assert gone.returncode == 1 and "does not exist" in gone.stderr.replace("\n", " ")
    assert zoo("registry", "merge", str(tmp_path / "nope.toml"), "--into", str(into)).returncode == 2
