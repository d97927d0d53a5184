"""`zoo export MODEL --checkpoint A,B --variant V1,V2`: a matrix of exports on -j worker processes or
Ray tasks, registered by the driver alone as each cell finishes (tiny, two test checkpoints)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Zoo

from zoo.core.registry.store import Registry

pytestmark = pytest.mark.slow

MATRIX = ("export", "tiny", "--random-weights", "--checkpoint", "a,b", "--variant", "fp32,fp16")


def machine(tmp_path: Path, tiny_site: Path, name: str, **env: str) -> Zoo:
    (tmp_path / name).mkdir()
    zoo = Zoo(tmp_path / name, [tiny_site])
    zoo.env.update(ZOO_TINY_CHECKPOINTS="a,b", **env)
    return zoo


def cells(zoo: Zoo) -> dict[tuple[str, str], dict]:
    """Per (checkpoint, variant): each package's weights (weight.bin's sha256: a package's manifest and
    spec carry identifiers that differ per conversion) and every recorded check's value."""
    from zoo.core.util.hashing import file_sha256

    out = {}
    registry = Registry(zoo.registry)
    for e in registry.exports():
        weights = {
            c.name: file_sha256(next((registry.export_dir(e) / c.path).rglob("weight.bin"))) for c in e.components
        }
        checks = sorted((v["level"], v["component"], v.get("metric"), v.get("value")) for v in e.validation)
        out[(e.checkpoint(), e.variant_name)] = {"weights": weights, "checks": checks, "level": e.validation_level}
    return out


def test_a_matrix_on_two_workers_registers_what_sequential_exports_do(tmp_path, tiny_site):
    zoo = machine(tmp_path, tiny_site, "par")
    report = json.loads(zoo(*MATRIX, "-j", "2", "--out", str(zoo.out), "--json", check=True).stdout)
    assert report["ok"] and report["counts"] == {"registered": 4}
    assert {(c["checkpoint"], c["variant"]) for c in report["cells"]} == {
        (k, v) for k in "ab" for v in ("fp32", "fp16")
    }
    assert all(c["level"] == "mil" and c["bytes"] > 0 and c["peak_rss_mb"] > 0 for c in report["cells"])
    entries = Registry(zoo.registry).exports()
    assert all(e.resources.get("peak_rss_mb", 0) > 0 for e in entries)  # recorded: a Ray task's memory request
    seq = machine(tmp_path, tiny_site, "seq")
    for checkpoint in "ab":
        for variant in ("fp32", "fp16"):
            args = ("export", "tiny", "--random-weights", "--checkpoint", checkpoint, "--variant", variant)
            seq(*args, "--out", str(seq.out), check=True)
    assert cells(zoo) == cells(seq)
    # the same command again: every cell reused, nothing registered twice
    again = json.loads(zoo(*MATRIX, "-j", "2", "--out", str(zoo.out), "--json", check=True).stdout)
    assert again["counts"] == {"reused": 4} and len(Registry(zoo.registry).exports()) == 4


def test_a_failing_cell_leaves_the_others_registered_and_exits_1(tmp_path, tiny_site):
    zoo = machine(tmp_path, tiny_site, "fail", ZOO_TINY_FAIL="b/fp16")
    proc = zoo(*MATRIX, "-j", "2", "--out", str(zoo.out), "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    failed = [c for c in report["cells"] if c["status"] == "failed"]
    assert [(c["checkpoint"], c["variant"]) for c in failed] == [("b", "fp16")]
    assert "fails on purpose" in failed[0]["reason"]
    assert len(Registry(zoo.registry).exports()) == 3
    table = zoo(*MATRIX, "-j", "2", "--out", str(zoo.out))  # the table for people: every cell, one line each
    assert table.returncode == 1 and "b/fp16" in table.stdout and "reused" in table.stdout


def test_a_killed_driver_leaves_finished_cells_registered_and_a_rerun_finishes(tmp_path, tiny_site):
    """SIGKILL of the driver once the first cell is registered: the registry reads, holds that cell,
    and the same command registers the rest and reuses it."""
    zoo = machine(tmp_path, tiny_site, "kill")
    driver = zoo.popen(*MATRIX, "-j", "1", "--out", str(zoo.out), "--json")
    try:
        while not (zoo.registry.exists() and Registry(zoo.registry).exports()):
            assert driver.poll() is None, driver.communicate()
            time.sleep(0.2)
        children = [
            int(p)
            for p in subprocess.run(["pgrep", "-P", str(driver.pid)], capture_output=True, text=True).stdout.split()
        ]
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    first = Registry(zoo.registry).exports()
    assert 1 <= len(first) < 4
    # the driver's worker processes follow it (none is left running a cell nobody will register)
    assert children

    def running() -> list[int]:  # a zombie (state Z) has exited; only its parent's reaping is left
        alive = []
        for pid in children:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(pid)
            except (OSError, IndexError):
                pass
        return alive

    while running():  # they poll their parent every second; no wall-clock limit (CI bounds the run)
        time.sleep(0.5)
    report = json.loads(zoo(*MATRIX, "-j", "1", "--out", str(zoo.out), "--json", check=True).stdout)
    assert report["counts"].get("reused", 0) >= len(first) and report["ok"]
    assert len(Registry(zoo.registry).exports()) == 4
    assert json.loads(zoo("verify", "--json", check=True).stdout)["ok"]


def test_ray_on_a_local_cluster_registers_what_two_workers_do(tmp_path, tiny_site):
    pytest.importorskip("ray")
    zoo = machine(tmp_path, tiny_site, "ray")
    report = json.loads(zoo(*MATRIX, "--ray", "local", "--out", str(zoo.out), "--json", check=True).stdout)
    assert report["counts"] == {"registered": 4}
    workers = machine(tmp_path, tiny_site, "j2")
    workers(*MATRIX, "-j", "2", "--out", str(workers.out), check=True)
    assert cells(zoo) == cells(workers)


def test_matrix_usage_errors_exit_2_before_anything_runs(tmp_path, tiny_site, monkeypatch):
    zoo = machine(tmp_path, tiny_site, "usage")
    unknown = zoo("export", "tiny", "--random-weights", "--checkpoint", "a,zz", "--out", str(zoo.out))
    assert unknown.returncode == 2 and "unknown checkpoint 'zz'" in unknown.stderr
    bad_variant = zoo("export", "tiny", "--random-weights", "--variant", "fp32,fp64", "-j", "2")
    assert bad_variant.returncode == 2 and "unknown variant 'fp64'" in bad_variant.stderr
    assert not zoo.registry.exists() or not Registry(zoo.registry).exports()

    import importlib.util

    from typer.testing import CliRunner

    from zoo.core.cli.app import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    monkeypatch.setenv("ZOO_REGISTRY", str(zoo.registry))
    result = CliRunner().invoke(app, ["export", "no_such_model", "--random-weights", "--ray", "local"])
    assert result.exit_code == 2 and "zoo-tts[ray]" in result.output


def test_a_worker_that_cannot_write_out_fails_its_cell_saying_so(tmp_path):
    """Shared storage missing on a node: the cell fails with the reason, before any model loads."""
    from zoo.core.export.matrix import Cell, Job, work
    from zoo.core.plugin.spec import WeightsSource

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    job = Job(Cell("tiny", "fp32"), WeightsSource.random(0), str(blocker / "out"), str(tmp_path / "cache"), "r.toml")
    outcome, prepared, _ = work(job)
    assert outcome.status == "failed" and prepared is None
    assert "cannot write --out" in outcome.reason and "shared storage" in outcome.reason


def test_progress_names_each_running_cell_and_its_stage(tmp_path):
    """The driver's line: done, running (each with the stage its worker last wrote), queued."""
    from zoo.core.export.matrix import Cell, Engine, Job, Outcome, _status_file, run_matrix
    from zoo.core.plugin.spec import WeightsSource

    jobs = [
        Job(Cell("tiny", v, "a"), WeightsSource.random(0), str(tmp_path / "out"), str(tmp_path / "c"), "r.toml")
        for v in ("fp32", "fp16", "fp16-w8")
    ]
    lines: list[str] = []

    class Stepwise(Engine):  # a cell ends at each poll, after writing its stage
        def __init__(self):
            self.running: list[Job] = []

        def submit(self, job):
            self.running.append(job)
            path = _status_file(job)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"convert:{job.cell.variant}")

        def finished(self, timeout):
            job = self.running.pop(0)
            return [(job, (Outcome(job.cell, "failed", "stopped by the test"), None, {}))]

    outcomes = run_matrix(jobs, Stepwise(), Registry(tmp_path / "r.toml"), lambda p: lines.append(p.line()), parallel=2)
    assert [o.status for o in outcomes] == ["failed"] * 3
    assert lines[0] == "0 done, 2 running, 1 queued — a/fp16: convert:fp16, a/fp32: convert:fp32"
    assert lines[-1].startswith("2 done, 1 running, 0 queued — a/fp16-w8: convert:fp16-w8")
