"""Durable files: the one family of atomic-write and fsync helpers of recsys.

Every module that must leave a file whole after a crash uses these (the archive,
the engine store, the API's archive store, plugins): files are written through a
temporary name beside them and ``os.replace`` so that readers see the old or the
new content, never half of one, and fsynced together with their folder so that a
crash keeps one of the two. Files are hashed in chunks (engines are ~1 GB).

==========================  =========================================================
:func:`atomic_output`       a block that writes a file's new content (temp, fsync,
                            ``os.replace``, fsync of the folder)
:func:`write_atomic`        the same for bytes in hand
:func:`create_synced`       a block that writes a new file (it must not exist), fsynced
:func:`write_synced`        the same for bytes in hand
:func:`fsync_file`          make a file written elsewhere durable
:func:`fsync_dir`           make a rename or a new file in a folder durable
:func:`temp_name`           a fresh ``.tmp-<prefix>-<random>`` name
:func:`hash_file`           (sha256, size) of a file; :func:`sha256_of` of an open one
==========================  =========================================================

Cross-process file locks are :mod:`recsys.locks`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

__all__ = [
    "CHUNK",
    "atomic_output",
    "create_synced",
    "fsync_dir",
    "fsync_file",
    "hash_file",
    "sha256_of",
    "temp_name",
    "write_atomic",
    "write_synced",
]

#: Bytes read at a time.
CHUNK = 1 << 20


def sha256_of(fp: IO[bytes]) -> tuple[str, int]:
    """(hex sha256, byte count) of the rest of an open binary file."""
    digest = hashlib.sha256()
    size = 0
    while chunk := fp.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def hash_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of a file, read in chunks."""
    with open(path, "rb") as fp:
        return sha256_of(fp)


def temp_name(folder: Path, prefix: str) -> Path:
    """A fresh ``folder/.tmp-<prefix>-<random>`` path (nothing is created)."""
    return folder / f".tmp-{prefix}-{secrets.token_hex(6)}"


@contextmanager
def create_synced(path: Path) -> Iterator[BinaryIO]:
    """Create ``path`` (it must not exist) and yield it open for writing (and reading
    back); when the block ends without an error the file is flushed and fsynced."""
    with open(path, "x+b") as out:
        yield out
        out.flush()
        os.fsync(out.fileno())


def write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with ``data`` and fsync it."""
    with create_synced(path) as out:
        out.write(data)


@contextmanager
def atomic_output(path: Path, *, prefix: str | None = None) -> Iterator[BinaryIO]:
    """Yield a new temporary file beside ``path`` (``.tmp-<prefix>-*``, ``prefix``
    defaulting to the lowercased name); when the block ends without an error it is
    fsynced, renamed over ``path`` and the folder is fsynced. On an error the
    temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = temp_name(path.parent, prefix if prefix is not None else path.name.lower())
    try:
        with create_synced(tmp) as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (see :func:`atomic_output`)."""
    with atomic_output(path) as out:
        out.write(data)


def fsync_file(path: Path) -> None:
    """Make the content of a file written and closed elsewhere durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
