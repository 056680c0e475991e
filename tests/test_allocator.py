"""Freed arrays go back to the operating system (glibc's mmap threshold, fixed by hmmclf.utils.allocator)."""

import subprocess
import sys
import textwrap

import pytest

from hmmclf.utils import allocator, parallel

# Three arrays of 20 MiB, each followed by an array of 1 MiB that is kept (it comes from the heap's
# top, so the heap cannot shrink below it); then the large ones are freed. A threshold above 20 MiB is
# where glibc's own threshold rises (up to 32 MiB) once numpy's temporaries have been freed.
PROBE = textwrap.dedent(
    """
    import sys
    import numpy as np
    from hmmclf.utils.allocator import fix_malloc_thresholds
    assert fix_malloc_thresholds(int(sys.argv[1]))
    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    before = rss_mib()
    arrays, kept = [], []
    for _ in range(3):
        arrays.append(np.ones(20 << 20, dtype=np.uint8))
        kept.append(np.ones(1 << 20, dtype=np.uint8))
    del arrays
    print(rss_mib() - before)
    """
)


@pytest.mark.skipif(not allocator._is_glibc(), reason="glibc's allocator only")
def test_freed_arrays_leave_the_process_with_the_fixed_threshold():
    def retained(threshold: int) -> float:
        done = subprocess.run([sys.executable, "-c", PROBE, str(threshold)], capture_output=True, text=True, check=True)
        return float(done.stdout)

    # Above the arrays' size the heap keeps their 60 MiB; at hmmclf's threshold only the 3 MiB kept stay.
    assert retained(32 << 20) > 50
    assert retained(allocator.MMAP_THRESHOLD_BYTES) < 10


def test_no_glibc_no_change_and_the_threshold_is_validated(monkeypatch):
    with pytest.raises(ValueError, match="positive"):
        allocator.fix_malloc_thresholds(0)

    def no_glibc(name):
        raise ValueError(name)

    monkeypatch.setattr(allocator.os, "confstr", no_glibc)
    assert allocator.fix_malloc_thresholds() is False


def test_worker_processes_fix_the_threshold_as_they_start(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "fix_malloc_thresholds", lambda: calls.append("allocator") or True)
    monkeypatch.setattr(parallel, "_ignore_sigint", lambda: calls.append("sigint"))
    parallel._start_worker()
    assert calls == ["allocator", "sigint"]
