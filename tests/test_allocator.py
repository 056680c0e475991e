"""Freed arrays go back to the operating system (glibc's mmap threshold, fixed by hmmclf.utils.allocator)."""

import os
import subprocess
import sys
import textwrap

import pytest

from hmmclf.utils import allocator, parallel


def glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


# Ten arrays of 6 MiB, each followed by a small array that is kept; then the large ones are freed.
# Before, a freed mapping of 20 MiB has raised glibc's threshold, as numpy's temporaries do in a cv.
PROBE = textwrap.dedent(
    """
    import sys
    import numpy as np
    if sys.argv[1] == "fixed":
        from hmmclf.utils.allocator import fix_mmap_threshold
        assert fix_mmap_threshold()
    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    big = np.ones(20 << 20, dtype=np.uint8)
    del big
    before = rss_mib()
    arrays, kept = [], []
    for _ in range(10):
        arrays.append(np.ones(6 << 20, dtype=np.uint8))
        kept.append(np.ones(4096, dtype=np.uint8))
    del arrays
    print(rss_mib() - before)
    """
)


@pytest.mark.skipif(not glibc(), reason="glibc's allocator only")
def test_freed_arrays_leave_the_process_with_a_fixed_threshold():
    def retained(mode: str) -> float:
        done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return float(done.stdout)

    # glibc's own rising threshold keeps the 60 MiB on the heap; the fixed one gives them back.
    assert retained("dynamic") > 40
    assert retained("fixed") < 5


def test_no_glibc_no_change_and_the_threshold_is_validated(monkeypatch):
    with pytest.raises(ValueError, match="positive"):
        allocator.fix_mmap_threshold(0)

    def no_glibc(name):
        raise ValueError(name)

    monkeypatch.setattr(allocator.os, "confstr", no_glibc)
    assert allocator.fix_mmap_threshold() is False


def test_worker_processes_fix_the_threshold_as_they_start(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "fix_mmap_threshold", lambda: calls.append("allocator") or True)
    monkeypatch.setattr(parallel, "_ignore_sigint", lambda: calls.append("sigint"))
    parallel._start_worker()
    assert calls == ["allocator", "sigint"]
