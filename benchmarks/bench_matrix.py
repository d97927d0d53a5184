"""Benchmark of a matrix export: pocket_tts's checkpoints at small-fp16 (random weights), run three ways
from an empty stage cache and registry each: one worker (`-j 1`, one cell after another), two local
workers (`-j 2`) and Ray tasks on a local cluster (`--ray local`).

    [BENCH_CHECKPOINTS=N] .venv/bin/python benchmarks/bench_matrix.py [--keep DIR]

(BENCH_CHECKPOINTS: only the first N exportable checkpoints; default all of them.)

Prints per run: wall time, cells registered/failed, the largest cell's peak RSS and the machine's
lowest available memory seen while it ran; then the speed-ups. Goals (2 cores): `-j 2` >= 1.7x one
worker; `--ray` within 10 % of `-j 2`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import workspace, workspace_env

SPEEDUP_GOAL = 1.7
RAY_WITHIN = 0.10


def checkpoints() -> list[str]:
    from zoo.core.host.plugins import PluginHost

    model = PluginHost().model("pocket_tts")
    names = [n for n, c in model.checkpoints.items() if not c.unsupported]
    limit = int(os.environ.get("BENCH_CHECKPOINTS", "0") or 0)
    return names[:limit] if limit else names


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(work: Path, names: list[str], how: list[str]) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    env = workspace_env(work)
    lowest = [available_mb()]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(1.0):
            lowest[0] = min(lowest[0], available_mb())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    args = ["export", "pocket_tts", "--random-weights", "--variant", "small-fp16", "--checkpoint", ",".join(names)]
    proc = subprocess.run(
        [sys.executable, "-m", "zoo", *args, *how, "--out", str(work / "exports"), "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    done.set()
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {"cells": [], "counts": {}}
    return {
        "how": " ".join(how),
        "wall_seconds": round(wall, 1),
        "counts": report["counts"],
        "largest_cell_peak_rss_mb": max((c["peak_rss_mb"] for c in report["cells"]), default=0),
        "lowest_available_mb": round(lowest[0]),
        "exit": proc.returncode,
        **({"stderr_tail": proc.stderr[-400:]} if proc.returncode else {}),
    }


def main() -> None:
    _, work, _ = workspace(__doc__, "zoo-bench-matrix-")
    names = checkpoints()
    print(f"{len(names)} checkpoints at small-fp16: {', '.join(names)}", flush=True)
    rows = []
    for label, how in (("one worker", ["-j", "1"]), ("-j 2", ["-j", "2"]), ("--ray local", ["--ray", "local"])):
        row = run(work / label.replace(" ", "_").replace("-", ""), names, how)
        rows.append(row)
        print(json.dumps(row), flush=True)
    one, two, ray = (r["wall_seconds"] for r in rows)
    print(f"\n-j 2 speed-up over one worker: {one / two:.2f}x (goal >= {SPEEDUP_GOAL}x)")
    print(f"--ray vs -j 2: {ray / two - 1:+.1%} wall time (goal within {RAY_WITHIN:.0%})")


if __name__ == "__main__":
    main()
