"""Where parallel work runs: this process and local workers by default, a Dask cluster on request.

Extraction chunks, cross-validation folds and per-class HMM fits go through
:func:`parallel_map`. With ``n_jobs`` = N on one machine, the calling process
runs tasks itself and N - 1 worker processes of loky (joblib's process pool)
run the others, all drawing from one queue of tasks. The calling process would
otherwise sit idle, and every worker process costs about a second of imports
(numpy, scipy, scikit-learn, hmmlearn) and a few hundred MB of memory.

Inside :func:`compute_backend` with a scheduler address, the same tasks go
through joblib's ``dask`` backend to a ``distributed`` cluster instead, so one
code path serves a laptop and a cluster.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

# What the worker processes of each command import before their first task
# (see start_workers).
WORKER_MODULES = {
    "extract": ("hmmclf.data.extraction",),
    "cv": (
        "hmmclf.data.extraction",
        "hmmclf.model.classifier",
        "hmmclf.evaluation.cv",
        "sklearn.cluster",
        "sklearn.ensemble",
    ),
}

# Every process already runs one task per core: more BLAS/OpenMP threads
# inside a worker would only oversubscribe the cores. Workers draw figures into files only.
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
# Idle workers exit after this long; a command's stages follow each other closely.
_WORKER_IDLE_SECONDS = 60

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
def compute_backend(
    scheduler: str | None = None,
    connect_timeout: str = "10s",
    n_jobs: int | None = None,
    preload: Sequence[str] = (),
) -> Iterator[str]:
    """Run the :func:`parallel_map` calls inside locally or on a Dask cluster.

    Parameters
    ----------
    scheduler : str, optional
        ``tcp://host:port`` of a running ``distributed`` scheduler. When None,
        ``$DASK_SCHEDULER_ADDRESS`` is used if set; otherwise this machine.
    connect_timeout : str
        How long to try to reach the scheduler.
    n_jobs : int, optional
        Processes the local work inside will use (all cores when None).
    preload : sequence of str
        Modules the local worker processes import as soon as they start,
        while this process goes on with its own start-up (see
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
        yield "local processes"
        return
    try:
        import joblib
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the install
        from .errors import HmmclfError

        raise HmmclfError(
            f"--scheduler {address}: the dask backend needs 'dask[distributed]' (pip install 'hmmclf[dask]'): {exc}"
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
    local: bool = False,
) -> list[R]:
    """Apply ``func`` to each item in parallel and return the results in order.

    ``on_result(index, result)`` is called in this process's calling thread
    as each result arrives (in completion order, not item order), so callers
    can show progress and save checkpoints. With one job and no cluster, the
    work runs in this process only, which keeps tracebacks and profiles
    simple. ``func`` and the items must be picklable (top-level functions).
    An exception raised by ``func`` in any process is raised here.
    ``local``: for work that writes files on this machine; inside a cluster
    backend it runs in this process instead of on the cluster.
    """
    n_jobs = 1 if local and _active_scheduler is not None else resolve_jobs(n_jobs)
    if _active_scheduler is not None and not local:
        import joblib

        # Unordered, so progress and checkpoints follow the work as it finishes.
        pairs: Iterable[tuple[int, R]] = joblib.Parallel(n_jobs=-1, return_as="generator_unordered", batch_size=1)(
            joblib.delayed(_indexed_call)(func, index, item) for index, item in enumerate(items)
        )
    elif n_jobs == 1 or len(items) <= 1:
        pairs = ((index, func(item)) for index, item in enumerate(items))
    else:
        pairs = _here_and_in_workers(func, items, min(n_jobs, len(items)) - 1)
    results: list[Any] = [None] * len(items)
    for index, result in pairs:
        results[index] = result
        if on_result is not None:
            on_result(index, result)
    return results


class _TaskCounter:
    """Hands out task indices, once each, to whichever process asks first."""

    def __init__(self, n_tasks: int) -> None:
        self._next = 0
        self._n_tasks = n_tasks
        self._lock = threading.Lock()
        self.stopped = False

    def claim(self) -> int | None:
        with self._lock:
            if self.stopped or self._next >= self._n_tasks:
                return None
            self._next += 1
            return self._next - 1


def _here_and_in_workers(func: Callable[[T], R], items: Sequence[T], n_workers: int) -> Iterator[tuple[int, R]]:
    """Run the tasks in this thread and in ``n_workers`` worker processes, yielding (index, result).

    A dispatcher thread keeps every worker busy with the next unclaimed task
    and queues what they return; this thread claims tasks too, runs them, and
    passes on the workers' results between its own tasks. Which process ran a
    task does not change its result.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    from threadpoolctl import threadpool_limits

    executor = _local_executor(n_workers)
    counter = _TaskCounter(len(items))
    arrived: queue.Queue = queue.Queue()
    done_marker = object()

    def dispatch() -> None:
        running: set = set()
        try:
            while True:
                while len(running) < n_workers:
                    index = counter.claim()
                    if index is None:
                        break
                    running.add(executor.submit(_indexed_call, func, index, items[index]))
                if not running:
                    break
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    arrived.put(future)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            counter.stopped = True
            arrived.put(exc)
        finally:
            arrived.put(done_marker)

    def received(block: bool) -> Iterator[tuple[int, R]]:
        nonlocal dispatcher_done
        while not dispatcher_done:
            try:
                entry = arrived.get(block=block)
            except queue.Empty:
                return
            if entry is done_marker:
                dispatcher_done = True
            elif isinstance(entry, BaseException):
                raise entry
            else:
                yield entry.result()

    dispatcher_done = False
    dispatcher = threading.Thread(target=dispatch, name="hmmclf-dispatch", daemon=True)
    dispatcher.start()
    interrupted = False
    try:
        with threadpool_limits(1):
            while True:
                index = counter.claim()
                if index is None:
                    break
                yield index, func(items[index])
                yield from received(block=False)
        yield from received(block=True)
    except KeyboardInterrupt:
        # Ctrl-C: the tasks running in workers are not waited for. Workers
        # ignore SIGINT (see _ignore_sigint), so they are killed here.
        interrupted = True
        counter.stopped = True
        kill_workers()
        raise
    finally:
        # On an error (here or in a worker) no new task starts; the tasks
        # already running in workers finish before this returns.
        counter.stopped = True
        dispatcher.join(timeout=_INTERRUPT_JOIN_SECONDS if interrupted else None)


_executor_lock = threading.Lock()
_executor: Any = None


def _local_executor(n_workers: int, modules: Sequence[str] = ()):
    """loky's reusable process pool with ``n_workers`` single-threaded workers, importing ``modules`` first."""
    global _executor
    from joblib.externals.loky import get_reusable_executor

    with _executor_lock:
        _executor = get_reusable_executor(
            max_workers=n_workers, timeout=_WORKER_IDLE_SECONDS, env=_WORKER_ENV, initializer=_start_worker
        )
        with _sigint_ignored():
            # A first task makes loky start its missing workers now, from this thread, while SIGINT is
            # ignored: a process started so inherits that, and a Ctrl-C during its start-up imports
            # (before the initializer runs) cannot print a traceback from it. The imports belong in
            # that first task: loky measures a worker's memory after its first task and restarts the
            # worker when it has grown by 300 MB since (it takes that for a leak); imports counted in
            # the growth (numba alone is 70 MB) made it restart workers in the middle of a cv.
            for _ in range(n_workers if modules else 1):
                _executor.submit(_import_modules, tuple(modules))
        return _executor


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored, for processes started meanwhile, and held back, for this one (main thread only).

    The disposition SIG_IGN is what a started process inherits. Blocking SIGINT as well keeps a
    Ctrl-C that arrives meanwhile pending (a blocked signal is not discarded even while ignored),
    so it is delivered to this process once its handler is back, not lost.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    can_block = hasattr(signal, "pthread_sigmask")
    if can_block:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if can_block:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


_INTERRUPT_JOIN_SECONDS = 5.0


def _start_worker() -> None:
    """Worker initializer: SIGINT ignored (:func:`_ignore_sigint`) and freed memory given back to the
    system as the command's own process does (:mod:`hmmclf.utils.allocator`)."""
    from .allocator import fix_malloc_thresholds

    fix_malloc_thresholds()
    _ignore_sigint()


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C reaches every process of the terminal's process group, but only the
    calling process acts on it (it kills the workers). A worker interrupted inside loky's result queue
    would leave the pool unable to report, and the caller waiting for it forever.

    A worker also exits by itself within half a second of its parent's death (a parent killed
    by SIGKILL, or one that exited before it could kill a worker it was just starting).
    """
    import signal
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="hmmclf-parent-watch", daemon=True).start()


def kill_workers() -> None:
    """Kill (SIGKILL) the local worker processes now and forget the pool; for Ctrl-C.

    Their running tasks are lost; the next :func:`parallel_map` starts a new pool.
    """
    global _executor
    if not _executor_lock.acquire(timeout=1.0):  # pragma: no cover - held by an interrupted frame
        return
    try:
        executor, _executor = _executor, None
    finally:
        _executor_lock.release()
    try:  # loky's own handle too: a pool being started when the Ctrl-C came is not in ours yet
        from joblib.externals.loky import reusable_executor

        executors = {id(e): e for e in (executor, getattr(reusable_executor, "_executor", None)) if e is not None}
    except ImportError:  # pragma: no cover
        executors = {id(executor): executor} if executor is not None else {}
    for executor in executors.values():
        _kill_pool(executor)
    _kill_child_processes()


def _kill_child_processes() -> None:
    """SIGKILL every remaining child of this process: a worker whose start the pool had not recorded yet.

    Linux only (it reads /proc); elsewhere such a worker still exits by itself shortly after this
    process, once its start-up imports are done (see :func:`_ignore_sigint`).
    """
    import signal

    me = os.getpid()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                if int(fields[1]) != me:  # the field after the state is the parent's pid
                    continue
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    if b"resource_tracker" in fh.read():
                        continue  # loky's tracker cleans the pool's semaphores up and exits by itself
                os.kill(int(entry.name), signal.SIGKILL)


def _kill_pool(executor) -> None:
    for process in list(getattr(executor, "_processes", {}).values()):
        with contextlib.suppress(Exception):
            process.kill()
    with contextlib.suppress(Exception):
        executor.shutdown(wait=False, kill_workers=True)


def start_workers(n_jobs: int | None, modules: Sequence[str]) -> None:
    """Start the worker processes of a coming :func:`parallel_map` now, without waiting.

    A worker process spends about a second importing numpy, scipy,
    scikit-learn and hmmlearn before its first task; started here, each
    with an import of ``modules`` as its first task, that overlaps with this
    process's own imports and data loading. loky keeps the workers for the
    next :func:`parallel_map` with the same ``n_jobs``; its tasks queue
    behind the imports. Does nothing for one job or on a cluster.
    """
    n_workers = resolve_jobs(n_jobs) - 1
    if _active_scheduler is not None or n_workers < 1 or not modules:
        return
    _local_executor(n_workers, modules)


def _import_modules(modules: tuple[str, ...]) -> int:
    import importlib

    for name in modules:
        importlib.import_module(name)
    return os.getpid()


def _indexed_call(func: Callable[[T], R], index: int, item: T) -> tuple[int, R]:
    return index, func(item)


def release_workers() -> None:
    """Stop the local worker processes that loky keeps for reuse, without waiting for them.

    After the last parallel stage of a command this returns the workers'
    memory. The idle workers are killed rather than asked to exit: an exiting
    worker tears its interpreter down for up to half a second, which the
    command could wait for at its own exit. A Dask cluster's workers are not
    touched.
    """
    global _executor
    with _executor_lock:
        if _executor is not None:
            _executor.shutdown(wait=False, kill_workers=True)
            _executor = None
