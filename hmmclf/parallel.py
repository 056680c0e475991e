"""Where parallel work runs: local processes by default, a Dask cluster on request.

Extraction and cross-validation folds go through :func:`parallel_map`, which
uses joblib. Inside :func:`compute_backend` with a scheduler address, joblib's
``dask`` backend sends the same tasks to a ``distributed`` cluster instead of
local processes, so one code path serves a laptop and a cluster.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

# What the local worker processes of each command import before their first
# task (see start_workers).
WORKER_MODULES = {
    "extract": ("hmmclf.cache",),
    "cv": ("hmmclf.cache", "hmmclf.model", "hmmclf.evaluation", "sklearn.cluster", "sklearn.ensemble"),
}

_active_scheduler: str | None = None
_warm_up: threading.Thread | None = None


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
def compute_backend(
    scheduler: str | None = None,
    connect_timeout: str = "10s",
    n_jobs: int | None = None,
    preload: Sequence[str] = (),
) -> Iterator[str]:
    """Run the :func:`parallel_map` calls inside on local processes or a Dask cluster.

    Parameters
    ----------
    scheduler : str, optional
        ``tcp://host:port`` of a running ``distributed`` scheduler. When None,
        ``$DASK_SCHEDULER_ADDRESS`` is used if set; otherwise local processes.
    connect_timeout : str
        How long to try to reach the scheduler.
    n_jobs : int, optional
        Local worker processes the work inside will use (all cores when None).
    preload : sequence of str
        Modules the local workers import as soon as they start, in the
        background, while this process goes on with its own start-up (see
        :func:`start_workers`).

    Yields
    ------
    str
        A short description of the backend, for the run's log.
    """
    global _active_scheduler
    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if not address:
        start_workers(n_jobs, preload)
        try:
            yield "local processes"
        finally:
            _wait_for_workers()
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
    _wait_for_workers()
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


def start_workers(n_jobs: int | None, modules: Sequence[str]) -> None:
    """Start the local worker processes now, each importing ``modules``, without waiting.

    A worker process spends about a second importing numpy, scipy,
    scikit-learn and hmmlearn before its first task; started here, in a
    background thread, that overlaps with this process's own imports and
    data loading. joblib keeps the workers for the next :func:`parallel_map`
    with the same ``n_jobs``, which waits for this start to finish first. A
    failed start only loses the time it would have saved.
    """
    global _warm_up
    n_jobs = resolve_jobs(n_jobs)
    if _active_scheduler is not None or n_jobs < 2 or not modules or _warm_up is not None:
        return

    def run() -> None:
        try:
            import joblib

            joblib.Parallel(n_jobs=n_jobs, batch_size=1)(joblib.delayed(_import_modules)(tuple(modules)) for _ in range(n_jobs))
        except Exception:  # noqa: BLE001 - see the docstring
            pass

    _warm_up = threading.Thread(target=run, name="hmmclf-worker-start", daemon=True)
    _warm_up.start()


def _wait_for_workers() -> None:
    global _warm_up
    if _warm_up is not None and threading.current_thread() is not _warm_up:
        _warm_up.join()
        _warm_up = None


def _import_modules(modules: tuple[str, ...]) -> int:
    import importlib

    for name in modules:
        importlib.import_module(name)
    return os.getpid()


def _indexed_call(func: Callable[[T], R], index: int, item: T) -> tuple[int, R]:
    return index, func(item)


def release_workers() -> None:
    """Stop the idle local worker processes that joblib keeps for reuse.

    joblib keeps its process pool alive until the interpreter exits; after the
    last parallel stage of a command, releasing it returns the workers'
    memory while the rest of the command (reports, figures) runs. It does not
    wait for them to exit. A Dask cluster's workers are not touched.
    """
    if _active_scheduler is not None:
        return
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=False)
