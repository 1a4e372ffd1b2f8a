"""Safe numpy arrays. (Atomic writes and the cross-process lock are the core's:
:mod:`recsys.fsutil` and :mod:`recsys.locks`.)

Arrays are plain ``.npy`` files, always read with ``allow_pickle=False`` and, for
the large ones, memory-mapped read-only so that the processes of one machine share
the page cache instead of holding private copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from recsys.errors import EngineLoadError

__all__ = ["load_array", "save_array"]


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
