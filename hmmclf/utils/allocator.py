"""Freed memory goes back to the operating system: a fixed mmap threshold for glibc's allocator.

glibc serves an allocation of at least its *mmap threshold* with a mapping of its own, which is
returned to the system as soon as it is freed; smaller ones come from the heap, whose freed space
mostly stays with the process. The threshold starts at 128 KiB but rises, up to 32 MiB, each time
a larger mapping is freed. After the first few of numpy's temporary arrays have come and gone,
every later one of up to 32 MiB (a fold's frames, their squares, a block of log-densities) comes
from the heap, and the process keeps the high-water mark of all of them. Setting the threshold
once also stops it from rising.

Measured with ``hmmclf cv --folds 5`` on the 5,500-clip corpus of the project's speed benchmark:
the peak resident memory of the command and its worker, summed, was 991-1039 MiB in ten runs of
hmmclf 0.8.0 and 0.9.0 without a fixed threshold, and 887-908 MiB in four with it at 16 MiB (at
4 MiB: 865-972 MiB in seven). The cost is system time, for the mappings' pages: a ``cv`` of
SPRSound took 2.5-2.9 s of it instead of 1.4-1.8 s, for the same wall time within the machine's
noise (and 2.6-3.4 s at 4 MiB).
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD_BYTES = 16 << 20
"""Allocations of at least this many bytes get their own mapping, given back when freed."""
_M_MMAP_THRESHOLD = -3
"""``mallopt``'s parameter number for the threshold (glibc's ``malloc.h``)."""


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix this process's mmap threshold at ``threshold`` bytes.

    Returns True when it was set, False where the C library is not glibc (musl, macOS, Windows:
    nothing is changed there).
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if not _is_glibc():
        return False
    try:
        # The running program's own symbols, glibc's among them (no search for the library file).
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):  # pragma: no cover - a libc without mallopt
        return False


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or not glibc
        return False
