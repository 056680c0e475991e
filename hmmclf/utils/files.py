"""Atomic file writes and directory locks.

Every file hmmclf writes goes to a temporary name in the destination directory
and is moved into place with :func:`os.replace`, which is atomic on POSIX and
Windows; a run killed at any moment leaves either the old file or the new one,
never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import BusyError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    The temporary file keeps ``path``'s suffix so that writers which choose a
    format by suffix (matplotlib, numpy) behave as for the final name.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` when closed cleanly."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``directory`` or raise :class:`BusyError`.

    The lock is an ``flock`` on ``<directory>/.lock``; the kernel releases it
    when the process dies, so a killed run never leaves a stale lock behind
    (only, after a kill, an empty ``.lock`` file that the next run reuses).
    A run that ends normally removes the file while it still holds the lock;
    a run that got the lock on a file removed meanwhile (its inode is no
    longer ``.lock``) lets it go and locks the new file instead.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / ".lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: fall back to no lock
        fcntl = None
    while True:
        fh = open(lock_path, "a+")
        if fcntl is None:  # pragma: no cover
            break
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise BusyError(
                f"{directory}: another hmmclf {what} is writing here; "
                "wait for it to finish or choose another output directory"
            ) from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # removed by the run that held it: lock the new one
    try:
        yield
    finally:
        try:
            if fcntl is not None:
                with contextlib.suppress(OSError):
                    lock_path.unlink()
        finally:
            fh.close()


def save_npz(path: str | os.PathLike[str], arrays: dict) -> None:
    """Write ``arrays`` as an uncompressed npz file, atomically."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_npz(path: str | os.PathLike[str], error: type[Exception], what: str, hint: str) -> dict:
    """Every array of an npz file, read with ``allow_pickle=False``.

    A missing file raises ``error`` with ``hint``; a file numpy cannot read
    without unpickling (object arrays), a truncated or non-zip file raises
    ``error`` naming it "damaged or foreign". Nothing in it is executed.
    """
    import struct
    import zipfile
    import zlib

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no {what} here ({hint})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    # A damaged zip reaches zipfile's and zlib's own errors (an unknown compression method is a
    # NotImplementedError, a bad deflate stream a zlib.error, a short header a struct.error).
    except (
        ValueError,
        OSError,
        EOFError,
        zipfile.BadZipFile,
        KeyError,
        NotImplementedError,
        zlib.error,
        struct.error,
    ) as exc:
        raise error(f"{path}: damaged or foreign {what} ({str(exc).splitlines()[0]})") from None


def checked_array(arrays: dict, name: str, shape: tuple[int, ...]):
    """``arrays[name]`` from :func:`load_npz`, required to be finite float64 of ``shape``.

    Raises
    ------
    ValueError
        Naming the array and what is wrong with it.
    """
    import numpy as np

    if name not in arrays:
        raise ValueError(f"missing array {name!r}")
    arr = arrays[name]
    if arr.dtype != np.float64 or arr.shape != shape:
        raise ValueError(f"array {name!r} has dtype {arr.dtype} shape {arr.shape}, expected float64 {shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"array {name!r} holds non-finite values")
    return arr
