"""parallel_map: this process and worker processes share one queue of tasks."""

from __future__ import annotations

import os
import time

import pytest

from hmmclf.utils.parallel import parallel_map, release_workers, start_workers


def _square_slowly(x: int) -> tuple[int, int]:
    time.sleep(0.05 + 0.05 * (x % 3))
    return x * x, os.getpid()


def _fail_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError(f"task {x} failed")
    return x


def test_results_in_order_every_task_once_and_both_processes_work():
    seen = []
    start_workers(2, ("json",))  # so that the worker is up before this process has done every task
    out = parallel_map(_square_slowly, list(range(20)), n_jobs=2, on_result=lambda i, r: seen.append(i))
    assert [value for value, _ in out] == [x * x for x in range(20)]
    assert sorted(seen) == list(range(20))
    pids = {pid for _, pid in out}
    assert os.getpid() in pids and len(pids) == 2


@pytest.mark.parametrize("n_jobs", [1, 2, 3])
def test_a_failing_task_raises_here(n_jobs):
    with pytest.raises(ValueError, match="task 7 failed"):
        parallel_map(_fail_on_seven, list(range(10)), n_jobs=n_jobs)
    # The pool is still usable afterwards.
    assert parallel_map(_fail_on_seven, [1, 2, 3], n_jobs=n_jobs) == [1, 2, 3]


def test_started_workers_are_reused_and_released():
    start_workers(2, ("json",))
    out = parallel_map(_square_slowly, [1, 2, 3, 4], n_jobs=2)
    assert [value for value, _ in out] == [1, 4, 9, 16]
    release_workers()
    out = parallel_map(_square_slowly, [5, 6], n_jobs=2)
    assert [value for value, _ in out] == [25, 36]
