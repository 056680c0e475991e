"""Where parallel work runs: local processes by default, a Dask cluster on request.

Extraction and cross-validation folds go through :func:`parallel_map`, which
uses joblib. Inside :func:`compute_backend` with a scheduler address, joblib's
``dask`` backend sends the same tasks to a ``distributed`` cluster instead of
local processes, so one code path serves a laptop and a cluster.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

_active_scheduler: str | None = None


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_jobs(n_jobs: int | None) -> int:
    """``None`` or a value below 1 means all cores; otherwise ``n_jobs``."""
    if n_jobs is None or n_jobs < 1:
        return default_jobs()
    return int(n_jobs)


@contextlib.contextmanager
def compute_backend(scheduler: str | None = None, connect_timeout: str = "10s") -> Iterator[str]:
    """Run the :func:`parallel_map` calls inside on local processes or a Dask cluster.

    Parameters
    ----------
    scheduler : str, optional
        ``tcp://host:port`` of a running ``distributed`` scheduler. When None,
        ``$DASK_SCHEDULER_ADDRESS`` is used if set; otherwise local processes.
    connect_timeout : str
        How long to try to reach the scheduler.

    Yields
    ------
    str
        A short description of the backend, for the run's log.
    """
    global _active_scheduler
    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if not address:
        yield "local processes"
        return
    try:
        import joblib
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the install
        from .errors import HmmclfError

        raise HmmclfError(
            f"--scheduler {address}: the dask backend needs 'dask[distributed]' "
            f"(pip install 'hmmclf[dask]'): {exc}"
        ) from None
    try:
        client = Client(address, timeout=connect_timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        from .errors import HmmclfError

        raise HmmclfError(f"cannot reach Dask scheduler {address}: {exc}") from None
    previous = _active_scheduler
    try:
        _active_scheduler = address
        with client.as_current(), joblib.parallel_config(backend="dask"):
            yield f"dask cluster at {address} ({len(client.scheduler_info().get('workers', {}))} workers)"
    finally:
        _active_scheduler = previous
        client.close()


def parallel_map(
    func: Callable[[T], R],
    items: Sequence[T],
    n_jobs: int | None = None,
    on_result: Callable[[int, R], Any] | None = None,
) -> list[R]:
    """Apply ``func`` to each item in parallel and return the results in order.

    ``on_result(index, result)`` is called in the parent as each result
    arrives (in completion order, not item order), so callers can show
    progress and save checkpoints.
    With one job and no cluster, the work runs in this process, which keeps
    tracebacks and profiles simple.
    """
    n_jobs = resolve_jobs(n_jobs)
    if _active_scheduler is None and (n_jobs == 1 or len(items) <= 1):
        pairs: Iterable[tuple[int, R]] = ((index, func(item)) for index, item in enumerate(items))
    else:
        import joblib

        # Unordered, so progress and checkpoints follow the work as it finishes.
        pairs = joblib.Parallel(
            n_jobs=-1 if _active_scheduler else n_jobs, return_as="generator_unordered", batch_size=1
        )(joblib.delayed(_indexed_call)(func, index, item) for index, item in enumerate(items))
    results: list[Any] = [None] * len(items)
    for index, result in pairs:
        results[index] = result
        if on_result is not None:
            on_result(index, result)
    return results


def _indexed_call(func: Callable[[T], R], index: int, item: T) -> tuple[int, R]:
    return index, func(item)
