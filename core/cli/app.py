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
