"""Freed memory goes back to the operating system: fixed mmap and trim thresholds for glibc's allocator.

glibc serves an allocation of at least its *mmap threshold* with a mapping of its own, which is
returned to the system as soon as it is freed; smaller ones come from the heap, which gives back
only free space at its top, and only beyond a *trim threshold*. Both thresholds start low (128
KiB) but rise, the first up to 32 MiB and the second to twice that, each time a larger mapping is
freed. After the first few of numpy's temporary arrays have come and gone, every later one of up
to 32 MiB (a fold's frames, their squares, a block of log-densities) comes from the heap, which
then keeps the high-water mark of all of them. Setting both thresholds once stops them rising:
arrays of 16 MiB or more get mappings, and the heap gives back free space beyond 4 MiB.

Measured with ``hmmclf cv --folds 5`` on the 5,500-clip corpus of the project's speed benchmark,
the peak resident memory of the command and its worker, summed: 973-1039 MiB in fourteen runs of
hmmclf 0.8.0 and 0.9.0 with glibc's own thresholds; 899-962 MiB in four with these; 887-908 MiB
in six with a trim threshold of 128 KiB, which cost ``extract`` of the same corpus three times the
system time (5.7 s against 1.6-2.0; these thresholds: 1.5-1.7 s); 964-993 MiB in two with a trim
threshold of 32 MiB. The cost that remains is the system time of mapping freed pages again: on
SPRSound, ``extract`` + ``cv`` took 3.6 s of it instead of 2.5 (0.8.0), for 1.03 times the wall
time (range 0.93-1.06, three alternating runs; the warm start of 0.9.0 saved user time meanwhile).
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD_BYTES = 16 << 20
"""Allocations of at least this many bytes get their own mapping, given back when freed."""
TRIM_THRESHOLD_BYTES = 4 << 20
"""Free space beyond this many bytes at the top of the heap is given back."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
"""``mallopt``'s parameter numbers (glibc's ``malloc.h``)."""


def fix_malloc_thresholds(mmap_threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix this process's mmap threshold at ``mmap_threshold`` bytes and its trim threshold at
    :data:`TRIM_THRESHOLD_BYTES`.

    Returns True when it was set, False where the C library is not glibc (musl, macOS, Windows:
    nothing is changed there).
    """
    if mmap_threshold <= 0:
        raise ValueError(f"mmap_threshold must be positive, got {mmap_threshold}")
    if not _is_glibc():
        return False
    try:
        # The running program's own symbols, glibc's among them (no search for the library file).
        libc = ctypes.CDLL(None)
        mapped = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))
        return bool(mapped) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # pragma: no cover - a libc without mallopt
        return False


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or not glibc
        return False
