"""The CLI as a user meets it: help, listing, failures, unknown names."""

from __future__ import annotations

import subprocess
import sys

from conftest import Zoo

NO_TORCH = """
import sys, runpy
sys.argv = ["zoo"] + sys.argv[1:]
try:
    runpy.run_module("zoo", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = [m for m in ("torch", "coremltools") if m in sys.modules]
assert not heavy, f"imported {heavy}"
print("NO-HEAVY-IMPORTS")
"""


def test_help_lists_every_command(zoo: Zoo):
    proc = zoo("--help", check=True)
    for command in ("list", "export", "verify", "info", "run"):
        assert command in proc.stdout
    export_help = zoo("export", "--help", check=True).stdout
    for option in ("--variant", "--weights", "--random-weights", "--seed", "--out", "--force", "--json"):
        assert option in export_help


def test_list_and_help_do_not_import_torch(zoo: Zoo):
    for args in (["list"], ["--help"], ["list", "--json"]):
        proc = subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=zoo.workdir, env=zoo.env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "NO-HEAVY-IMPORTS" in proc.stdout


def test_list_shows_plugins_with_version_and_hooks(zoo: Zoo):
    proc = zoo("list", check=True)
    assert "tiny" in proc.stdout and "0.2.0" in proc.stdout and "build_traceables" in proc.stdout
    assert "no exports" in proc.stdout


def test_broken_plugin_does_not_take_the_others_down(tmp_path, tiny_site, broken_site):
    zoo = Zoo(tmp_path, [tiny_site, broken_site])
    proc = zoo("list", check=True)
    assert "broken" in proc.stdout and "this plugin is broken on purpose" in proc.stdout
    assert "tiny" in proc.stdout and "✓ loaded" in proc.stdout
    strict = zoo("--strict", "list")
    assert strict.returncode != 0
    assert "broken" in strict.stderr


def test_unknown_model_exits_2_with_suggestion(zoo: Zoo):
    for command in (["export", "tiyn", "--random-weights"], ["info", "tiyn"], ["run", "tiyn", "hi", "-o", "x.wav"]):
        proc = zoo(*command)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "tiny" in proc.stderr and "Did you mean 'tiny'" in proc.stderr


def test_info_describes_the_model(zoo: Zoo):
    proc = zoo("info", "tiny", check=True)
    assert "encoder" in proc.stdout and "vocoder" in proc.stdout and "fp16" in proc.stdout


def test_bad_options_are_usage_errors(zoo: Zoo, tmp_path):
    assert zoo("export", "tiny", "--random-weights", "--weights", str(tmp_path)).returncode == 2
    assert zoo("export", "tiny", "--weights", str(tmp_path / "missing")).returncode == 2
    assert zoo("export", "tiny", "--random-weights", "--variant", "int4").returncode == 2
    assert zoo("export", "tiny").returncode == 2  # no hub repository: needs --weights or --random-weights
    assert zoo("run", "tiny", "hi", "-o", "x.wav", "--backend", "tpu").returncode == 2
    assert zoo("run", "tiny", "hi", "-o", "x.wav", "--set", "novalue").returncode == 2


def test_python_dash_m_works(zoo: Zoo):
    proc = subprocess.run([sys.executable, "-m", "zoo", "--version"], env=zoo.env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("zoo ")
