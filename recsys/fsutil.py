"""Small durable-file helpers shared by the archive and the engine store.

Files are hashed in chunks (engines are ~1 GB), written through a temporary name
and ``os.replace`` so that readers see the old or the new content, never half of
one, and fsynced together with their folder so that a crash keeps one of the two.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import IO

__all__ = ["CHUNK", "fsync_dir", "hash_file", "sha256_of", "temp_name", "write_atomic", "write_synced"]

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


def write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with ``data`` and fsync it."""
    with open(path, "xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp file, fsync,
    ``os.replace``, fsync of the folder). The temporary file is ``.tmp-*`` beside it."""
    tmp = temp_name(path.parent, path.name.lower())
    try:
        write_synced(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
