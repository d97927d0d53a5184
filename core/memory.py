"""The process's memory: its peak so far, and freed memory given back to the system.

On Linux, glibc serves allocations up to a threshold from its heap and keeps what is freed there;
the threshold rises to the largest block freed so far (up to 32 MB), so a model's weight matrices
(1-30 MB each) and their float64 copies stay resident after an export stage frees them, and the
next stage's allocations add to them (vibevoice: 10.5 GB at the end of an export whose stages
each need less). A fixed threshold maps every block of at least ``MMAP_THRESHOLD`` on its own and
unmaps it when freed. Other platforms' allocators return large blocks by themselves.
"""

from __future__ import annotations

import platform

#: blocks this large or larger are mapped on their own (and unmapped when freed)
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def return_freed_memory() -> bool:
    """Make large freed blocks go back to the system (glibc); True if the allocator took it."""
    if platform.system() != "Linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # another C library (musl): nothing to tune
        return False


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if platform.system() == "Darwin" else 1024), 1)  # bytes on macOS, KiB elsewhere
