"""The test suite's cost on this machine, against issue 33's goals: `make test-fast` (every test not
marked slow) and `make test` (all of them), each from the project's settings (two workers, longest
files first), then the five slowest tests of the whole suite.

    .venv/bin/python benchmarks/bench_suite.py [--only fast|full] [pytest arguments]

Run it with nothing else on the machine: the goals are for two idle cores.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

GOALS = {"fast": 90, "full": 600}  # seconds (issue 33)
SELECT = {"fast": ["-m", "not slow"], "full": []}


def run(root: Path, which: str, extra: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--durations=5", *SELECT[which], *extra],
        cwd=root,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start, proc.returncode, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(GOALS))
    opts, extra = parser.parse_known_args()
    root = Path(__file__).resolve().parent.parent
    failed = 0
    for which in [opts.only] if opts.only else ["fast", "full"]:
        wall, code, out = run(root, which, extra)
        summary = next((line for line in reversed(out.splitlines()) if " in " in line and "passed" in line), "")
        goal = GOALS[which]
        print(
            f"make test{'-fast' if which == 'fast' else ''}: {wall:.0f} s, exit {code} "
            f"(goal <= {goal} s: {'ok' if wall <= goal else 'over'}); {summary.strip('= ')}",
            flush=True,
        )
        if which == "full":
            slowest = re.findall(r"^\s*([\d.]+s (?:call|setup|teardown)\s+\S+)", out, re.MULTILINE)
            print("  five slowest:\n    " + "\n    ".join(slowest[:5]))
        if code:
            failed = 1
            print(out[-3000:])
    sys.exit(failed)


if __name__ == "__main__":
    main()
