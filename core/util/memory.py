"""The process's memory: its peak so far, and freed memory given back to the system.

On Linux, glibc serves allocations up to a threshold from its heap and keeps what is freed there;
the threshold rises to the largest block freed so far (up to 32 MB), so a model's weight matrices
(1-30 MB each) and their float64 copies stay resident after an export stage freed them, under
the next stage's allocations. ``malloc_trim`` hands the heap's free pages back; the export calls
it when a stage ends. (Mapping every large block on its own instead — ``mallopt`` — made numpy's
element-wise ops on 4 MB arrays 12x slower: each new array faulted its pages in again.) Other
platforms' allocators return large blocks by themselves.
"""

from __future__ import annotations

import platform


def return_freed_memory() -> bool:
    """Give the heap's free pages back to the system (glibc); True if it released any."""
    if platform.system() != "Linux":
        return False
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # another C library (musl): nothing to do
        return False


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if platform.system() == "Darwin" else 1024), 1)  # bytes on macOS, KiB elsewhere
