"""The interpreter's worker threads: the compiled loops (``loops``) release the GIL, so one call can
run on every core this process may use, split in contiguous ranges.

One pool per process and size (a forked child starts its own: its parent's threads are gone).
Imports the standard library and ``util.cpus`` only.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

_POOL: dict[str, ThreadPoolExecutor] = {}


def count() -> int:
    """This process's share of the cores, at most 8: each share costs a hand-over to a pool thread
    (~20-50 µs) and a 4,864-row weight split 8 ways is 608 rows a thread already (measured on 2 cores
    only: beyond that the cap is a guard, not a measured optimum)."""
    from ..util.cpus import cpu_share

    return max(1, min(cpu_share(), 8))


def pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of ``threads`` workers."""
    key = f"{os.getpid()}:{threads}"
    if key not in _POOL:
        _POOL.clear()
        _POOL[key] = ThreadPoolExecutor(threads, thread_name_prefix="zoo-mil")
    return _POOL[key]


def run_split(bounds: list[int], work: Callable[[int, int], Any]) -> list[Any]:
    """``work(first, last)`` for each consecutive pair of ``bounds``, at once: the calling thread
    takes the first range, pool threads the others; their results in order."""
    ranges = list(zip(bounds[:-1], bounds[1:]))
    if len(ranges) == 1:
        return [work(*ranges[0])]
    others = [pool(len(ranges) - 1).submit(work, a, b) for a, b in ranges[1:]]
    first = work(*ranges[0])
    return [first] + [done.result() for done in others]


def even_bounds(size: int, minimum: int) -> list[int]:
    """[0, ..., size] cut into ``count()`` near-equal ranges when ``size`` is at least ``minimum``
    (one range otherwise: a hand-over costs more than a short loop)."""
    threads = count() if size >= minimum else 1
    return [size * i // threads for i in range(threads)] + [size]
