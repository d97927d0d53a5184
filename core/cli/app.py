"""The `zoo` command line: the app (``common.app``) with every command registered (``commands/``).

Plugins are loaded only by the commands that need them, and torch/coremltools
only by the hooks that use them, so `zoo --help` and `zoo list` stay fast.
"""

from __future__ import annotations

import os
import sys

from ..registry.store import RegistryError
from . import commands  # noqa: F401  (registers every command on the app)
from .common import EXIT_FAILED, app, err

__all__ = ["app", "main"]


def main() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # coremltools' per-pass progress bars: zoo shows its own
    # OpenBLAS's idle threads spin for ~2**28 cycles after each product before they sleep, on the
    # cores the MIL interpreter's own loops (``mil.half``) then run on; 2**4 is OpenBLAS's least.
    # Read when numpy loads (nothing before this imports it; a value the user set is kept).
    # Measured (2026-12-05, 2 cores): vibevoice's 2 s run 20.7 -> 17.7 s, its fp16 weight products
    # 5.0 -> 3.3 s; kokoro's sentence 13.45 / 13.54 s either way.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    if os.environ.get("ZOO_DEBUG"):
        app()
        return
    try:
        app()
    except Exception as exc:  # last resort: a clear line instead of a traceback
        from ..host.plugins import HookError

        if isinstance(exc, (HookError, RegistryError)):
            err.print(f"[red]✗ {exc}[/]")
        else:
            err.print(f"[red]✗ {type(exc).__name__}: {exc}[/] (set ZOO_DEBUG=1 for a traceback)")
        sys.exit(EXIT_FAILED)
