"""The suite's `zoo` commands run forked from a prewarmed process (tests/prewarmed.py): each must
behave as the fresh `python -m zoo` it stands for, or every test built on it proves nothing."""

from __future__ import annotations

import json
import os

import pytest
from conftest import Zoo, plugin_site

pytestmark = pytest.mark.slow  # a fresh interpreter per comparison


def both(zoo: Zoo, *args: str) -> tuple:
    forked, fresh = zoo(*args), zoo(*args, fresh=True)
    return forked, fresh


def test_a_forked_command_answers_as_a_fresh_process_does(zoo: Zoo):
    # a plugin found only through the command's PYTHONPATH, the registry only through its environment
    forked, fresh = both(zoo, "list", "--json")
    assert forked.returncode == fresh.returncode == 0
    assert json.loads(forked.stdout) == json.loads(fresh.stdout)
    assert "tiny" in {p["name"] for p in json.loads(forked.stdout)["plugins"]}
    # a usage error: the same exit code and message
    forked, fresh = both(zoo, "export", "no-such-model")
    assert forked.returncode == fresh.returncode == 2
    assert forked.stderr == fresh.stderr and "no-such-model" in forked.stderr
    # --help: the program name click derives from `python -m zoo`
    forked, fresh = both(zoo, "--help")
    assert forked.stdout == fresh.stdout


def test_a_forked_command_writes_where_a_fresh_one_would_and_the_same_bytes(zoo: Zoo):
    export = json.loads(zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), "--json", check=True).stdout)
    assert export["ok"]
    zoo("run", "tiny", "hello", "--backend", "mil", "-o", "forked.wav", check=True)  # relative: the command's cwd
    zoo("run", "tiny", "hello", "--backend", "mil", "-o", "fresh.wav", check=True, fresh=True)
    assert (zoo.workdir / "forked.wav").read_bytes() == (zoo.workdir / "fresh.wav").read_bytes()
    # the environment is the command's own: another registry sees nothing
    other = zoo("--registry", str(zoo.workdir / "other.toml"), "list", "--json", check=True)
    assert json.loads(other.stdout)["exports"] == []
    zoo.env["ZOO_REGISTRY"] = str(zoo.workdir / "other.toml")
    assert json.loads(zoo("list", "--json", check=True).stdout)["exports"] == []


def test_a_command_that_dies_of_a_signal_reports_it_as_subprocess_does(zoo: Zoo, tmp_path):
    """A plugin that kills its own process: the status is minus the signal, as subprocess gives it."""
    zoo.env["PYTHONPATH"] = str(
        plugin_site(tmp_path / "suicide", "suicide", "import os, signal\nos.kill(os.getpid(), 15)\n")
    )
    forked, fresh = both(zoo, "list")
    assert forked.returncode == fresh.returncode == -15


def test_what_modules_read_from_the_environment_at_import_is_the_commands_own(zoo: Zoo, tmp_path):
    """A probe plugin reports what its process sees: the hub's offline switch (read when
    huggingface_hub is imported, which importing coremltools does) and torch's thread count (read
    when torch is imported: a command asking for other threads runs fresh)."""
    probe = (
        "import json, os, torch\n"
        "import huggingface_hub.constants as hub\n"
        "seen = {'offline': hub.HF_HUB_OFFLINE, 'home': hub.HF_HOME, 'threads': torch.get_num_threads()}\n"
        "open(os.environ['PROBE_OUT'], 'w').write(json.dumps(seen))\n"
    )
    zoo.env["PYTHONPATH"] = str(plugin_site(tmp_path / "probe", "probe", probe))
    threads = "2" if os.environ.get("OMP_NUM_THREADS") == "1" else "1"  # not what the server has
    for extra in ({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, {"OMP_NUM_THREADS": threads}):
        seen = []
        for fresh in (False, True):
            zoo.env.update(extra, PROBE_OUT=str(tmp_path / f"probe-{fresh}.json"))
            zoo("list", fresh=fresh)
            seen.append(json.loads((tmp_path / f"probe-{fresh}.json").read_text()))
        assert seen[0] == seen[1], (extra, seen)
    assert seen[0]["threads"] == int(threads) and seen[0]["offline"] is True
