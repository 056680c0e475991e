"""Freed memory goes back to the operating system: a fixed mmap threshold for glibc's allocator.

glibc serves an allocation of at least its *mmap threshold* with a mapping of its own, which is
returned to the system as soon as it is freed; smaller ones come from the heap, which gives back
only free space at its top, and only beyond a *trim threshold*. Both thresholds start low (128
KiB) but rise, the first up to 32 MiB and the second to twice that, each time a larger mapping is
freed. After the first few of numpy's temporary arrays have come and gone, every later one of up
to 32 MiB (a fold's frames, their squares, a block of log-densities) comes from the heap, which
then keeps the high-water mark of all of them. Setting the mmap threshold once stops both from
rising: arrays of 16 MiB or more get mappings, and the heap gives free space back from 128 KiB on.

Measured with ``hmmclf cv --folds 5`` on the 5,500-clip corpus of the project's speed benchmark,
the peak resident memory of the command and its worker, summed: 973-1039 MiB in fourteen runs of
hmmclf 0.8.0 and 0.9.0 without it, 887-908 MiB in six with it (most of the saving is the heap's
trimming: with the trim threshold left at 32 MiB, 964-993 MiB). The cost is the system time of
mapping those pages again: on SPRSound, ``cv`` took 3.1 s of system time instead of 1.6 and 1.06
times as long in wall time (medians of 4 alternating runs; range 0.87-1.11).
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
