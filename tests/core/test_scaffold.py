"""`zoo new-plugin`: the third-party path, end to end — scaffold, install, list, export, run, and
the scaffold's own tests; and the built-in plugins laid out on the same skeleton."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Zoo, _pip_install_target

pytestmark = pytest.mark.slow

#: the skeleton's roles (zoo.core.plugin.skeleton): every plugin has these files
SKELETON = {
    "__init__.py",
    "options.py",
    "reference.py",
    "traceables.py",
    "constants.py",
    "loop.py",
    "parity.py",
    "contract.py",
}


def test_new_plugin_installs_lists_exports_and_runs(tmp_path: Path, tiny_site: Path):
    scaffold = Zoo(tmp_path / "a", [tiny_site])
    (tmp_path / "a").mkdir()
    made = scaffold("new-plugin", "demo_tts", "--dir", str(tmp_path / "demo"), check=True)
    assert "zoo_demo_tts/options.py" in made.stdout
    package = tmp_path / "demo" / "zoo_demo_tts"
    assert {p.name for p in package.glob("*.py")} == SKELETON

    site = tmp_path / "site"
    _pip_install_target(tmp_path / "demo", site)
    zoo = Zoo(tmp_path / "work", [site])
    (tmp_path / "work").mkdir()
    listing = json.loads(zoo("list", "--json", check=True).stdout)
    plugin = next(p for p in listing["plugins"] if p["name"] == "demo_tts")
    assert plugin["version"] == "0.1.0" and plugin["models"] == ["demo_tts"] and not plugin.get("error")

    report = json.loads(
        zoo("export", "demo_tts", "--random-weights", "--out", str(zoo.out), "--json", check=True).stdout
    )
    assert report["ok"] and report["validation_level"] == "mil"
    metrics = {(c["level"], c["component"], c.get("metric")): c["status"] for c in report["validation"]}
    assert metrics[("reference", "synth", "float64_rel")] == "passed"
    assert metrics[("reference", "loop:utterance", "rel")] == "passed"
    assert metrics[("mil", "synth", "rel")] == "passed"
    run = json.loads(zoo("run", "demo_tts", "Hello.", "-o", str(zoo.workdir / "h.wav"), "--json", check=True).stdout)
    assert run["frames"] == 6 and run["backend"] == "mil"

    # the scaffold's own small-config test passes as written
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            str(tmp_path / "demo" / "tests"),
        ],
        cwd=tmp_path / "demo",
        env=zoo.env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout  # the float64 check and the loop against its contract


@pytest.mark.parametrize(
    "name, problem", [("9lives", "must be lowercase"), ("My-TTS", "must be lowercase"), ("class", "must be lowercase")]
)
def test_new_plugin_refuses_a_bad_name_writing_nothing(zoo: Zoo, name: str, problem: str):
    proc = zoo("new-plugin", name, "--dir", str(zoo.workdir / "x"))
    assert proc.returncode == 2 and problem in " ".join(proc.stderr.split()) and name in proc.stderr
    assert not (zoo.workdir / "x").exists()


def test_new_plugin_never_touches_an_existing_directory(zoo: Zoo):
    dest = zoo.workdir / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    proc = zoo("new-plugin", "demo_tts", "--dir", str(dest))
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]
    assert not [p for p in zoo.workdir.iterdir() if p.name.startswith(".mine.")]  # no leftover temporary directory


@pytest.mark.parametrize("plugin", ["pocket_tts", "kokoro", "vibevoice", "qwen3_tts"])
def test_built_in_plugins_are_laid_out_on_the_skeleton(plugin: str):
    folder = ROOT / "plugins" / plugin
    assert SKELETON <= {p.name for p in folder.glob("*.py")}
    init = (folder / "__init__.py").read_text()
    assert "(ModelPlugin):" in init and "\nplugin = " in init and "@hookimpl" not in init  # no per-hook trampolines
