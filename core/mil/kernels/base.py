"""The kernel table every section registers into, and the small argument readers they share."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

KERNELS: dict[str, Callable[..., Any]] = {}


def kernel(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            KERNELS[name] = fn
        return fn

    return register


def _ints(v: Any) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _axis(axis: Any, rank: int) -> int:
    a = int(axis)
    return a + rank if a < 0 else a
