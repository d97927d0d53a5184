"""How many cores this process should keep busy."""

from __future__ import annotations

import os


def cpu_share() -> int:
    """``OMP_NUM_THREADS`` when set (the test suite gives each of its workers its share of the
    cores; a user limits torch and BLAS the same way), else every core this process may use."""
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        return int(threads)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
