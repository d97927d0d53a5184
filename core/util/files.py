"""Filesystem facts zoo needs when it writes files: the process's umask."""

from __future__ import annotations

import os


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
