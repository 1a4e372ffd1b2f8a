"""Small file helpers: atomic writes, a cross-process lock, and safe numpy arrays.

Arrays are plain ``.npy`` files, always read with ``allow_pickle=False`` and, for
the large ones, memory-mapped read-only so that the processes of one machine share
the page cache instead of holding private copies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from recsys.errors import EngineLoadError, LockTimeout

__all__ = ["file_lock", "load_array", "save_array", "temporary_path", "write_atomic"]


@contextlib.contextmanager
def temporary_path(final: Path) -> Iterator[Path]:
    """A fresh temporary file name beside ``final`` (same file system, so ``os.replace``
    is atomic); the temporary file is removed if the block fails."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    with temporary_path(path) as tmp:
        tmp.write_bytes(data)
        os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 600.0, poll: float = 0.2) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) across processes.

    Raises LockTimeout after ``timeout`` seconds, naming the lock file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"another process held {path} for more than {timeout:.0f} s; if none is running, "
                        "delete the file and retry"
                    ) from None
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def save_array(path: Path, array: NDArray[np.generic]) -> None:
    """Save one array as ``.npy`` (never pickled: object arrays are refused)."""
    if array.dtype.hasobject:
        raise TypeError(f"refusing to save an object array to {path}: only plain dtypes are stored")
    with path.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def load_array(
    path: Path,
    *,
    dtype: str | None = None,
    ndim: int | None = None,
    mmap: bool = False,
) -> NDArray[np.generic]:
    """Load a ``.npy`` saved by :func:`save_array`; never unpickles.

    ``dtype`` and ``ndim`` are checked when given; ``mmap`` maps the file read-only.
    Raises EngineLoadError naming the file and what is wrong with it.
    """
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EngineLoadError(f"cannot read engine file {path.name!r}: {exc}; rebuild the engine") from exc
    if not isinstance(array, np.ndarray):
        raise EngineLoadError(f"engine file {path.name!r} is not a single numpy array; rebuild the engine")
    if dtype is not None and array.dtype != np.dtype(dtype):
        raise EngineLoadError(f"engine file {path.name!r} holds {array.dtype}, expected {dtype}; rebuild the engine")
    if ndim is not None and array.ndim != ndim:
        raise EngineLoadError(
            f"engine file {path.name!r} has {array.ndim} dimension(s), expected {ndim}; rebuild the engine"
        )
    return array
