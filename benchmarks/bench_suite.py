"""`make test`'s cost: the suite's wall time on this machine, against issue 16's goal.

    .venv/bin/python benchmarks/bench_suite.py [pytest arguments]

Runs ``python -m pytest`` (the project's settings: two workers, longest files first) with
``--durations=15`` and prints its wall time with the goal beside it. Run it with nothing else on
the machine: the goal is for two idle cores.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

GOAL_SECONDS = 360


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--durations=15", *sys.argv[1:]], cwd=root)
    wall = time.perf_counter() - start
    print(
        f"\nmake test (pytest): {wall:.0f} s, exit {proc.returncode} (goal <= {GOAL_SECONDS} s: "
        f"{'ok' if wall <= GOAL_SECONDS else 'over'})"
    )
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
