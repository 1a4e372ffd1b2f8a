"""Content-addressed files: one folder of blobs named by their sha256.

Both ends of the engine rollout keep one: the API (the files of every kept engine
version, :mod:`recsys_api.archive_store`) and each worker machine (the files of its
installed versions, :mod:`recsys.store`). An engine version is its manifest; its
files are blobs, so a version that shares files with the one before it shares
their bytes too, on disk and on the wire.

Layout under ``root``::

    <aa>/<sha256>        a complete, verified blob (aa: its first two hex digits);
                         never written in place, only renamed into place
    .partial/<sha256>    the bytes of a download received so far, kept across a crash
                         so the next attempt resumes where it stopped (HTTP Range)
    .tmp-*               a blob being copied in; removed by :meth:`BlobStore.clean`

Rules: every way in checks the bytes against the name (size and sha256) before the
blob is renamed into place; a mismatch deletes what was received and raises
:class:`~recsys.errors.InvalidArchive`. Blobs are never modified: versions are
assembled from them by hard links (:meth:`BlobStore.link`), so a blob must be
treated as read-only by whoever opens it. Writers serialise on a lock of their own
(the engine store's or the archive store's); reading needs none.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from recsys.errors import InvalidArchive, StoreError
from recsys.fsutil import CHUNK, fsync_dir, fsync_file, temp_name

__all__ = ["BlobStore", "PartialBlob", "valid_sha256"]

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
PARTIAL = ".partial"


def valid_sha256(value: object) -> bool:
    """Whether ``value`` is 64 lowercase hex digits (the name of a blob)."""
    return isinstance(value, str) and bool(_SHA256.match(value))


class PartialBlob:
    """A download in progress: ``offset`` bytes are already on disk.

    :meth:`write` appends; :meth:`finish` checks the whole file (size, sha256) and
    renames it into the store. On a mismatch the partial file is deleted (the next
    attempt starts from zero) and InvalidArchive is raised. When the writer dies the
    partial file stays, and the next :meth:`BlobStore.partial` resumes after it.
    """

    def __init__(self, store: BlobStore, sha256: str, size: int) -> None:
        self.store = store
        self.sha256 = sha256
        self.size = size
        self.path = store.root / PARTIAL / sha256
        self.path.parent.mkdir(exist_ok=True)
        try:
            existing = self.path.stat().st_size
        except FileNotFoundError:
            existing = 0
        if existing > size:  # not a prefix of this blob: start again
            self.path.unlink()
            existing = 0
        self._digest = hashlib.sha256()
        if existing:
            with open(self.path, "rb") as fp:
                while chunk := fp.read(CHUNK):
                    self._digest.update(chunk)
        self.offset = existing
        self._out: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - closed by finish/close

    def write(self, chunk: bytes) -> None:
        if self.offset + len(chunk) > self.size:
            self.discard()
            raise InvalidArchive(
                f"blob {self.sha256} is announced with {self.size} bytes but more arrived; deleted the download"
            )
        self._out.write(chunk)
        self._digest.update(chunk)
        self.offset += len(chunk)

    def close(self) -> None:
        """Stop writing and keep what arrived (an interrupted download resumes later)."""
        if not self._out.closed:
            self._out.flush()
            self._out.close()

    def discard(self) -> None:
        """Stop writing and delete what arrived."""
        self.close()
        self.path.unlink(missing_ok=True)

    def finish(self) -> Path:
        """Check the download and move it into the store; returns the blob's path."""
        self.close()
        fsync_file(self.path)
        actual = self._digest.hexdigest()
        if self.offset != self.size or actual != self.sha256:
            self.path.unlink(missing_ok=True)
            raise InvalidArchive(
                f"blob {self.sha256}: the received bytes do not match its name "
                f"({self.offset} of {self.size} bytes, sha256 {actual}); deleted them"
            )
        return self.store._place(self.path, self.sha256)


class BlobStore:
    """A folder of blobs named by sha256 (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            (self.root / PARTIAL).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the blob store at {str(self.root)!r}: {exc}") from exc

    # -- reading -------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        """Where blob ``sha256`` lives (whether or not it is there)."""
        if not valid_sha256(sha256):
            raise ValueError(f"a blob name is 64 lowercase hex digits, got {sha256!r}")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return valid_sha256(sha256) and self.path(sha256).is_file()

    def size(self, sha256: str) -> int | None:
        """The blob's size in bytes, None when it is not here."""
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, sha256: str) -> BinaryIO:
        """The blob opened for reading (FileNotFoundError when absent)."""
        return open(self.path(sha256), "rb")

    def names(self) -> Iterator[str]:
        """Every complete blob's sha256."""
        for folder in self.root.iterdir():
            if len(folder.name) == 2 and folder.is_dir():
                for blob in folder.iterdir():
                    if valid_sha256(blob.name) and blob.name.startswith(folder.name):
                        yield blob.name

    def partial_bytes(self, sha256: str) -> int:
        """Bytes of an interrupted download of ``sha256`` on disk (0: none)."""
        try:
            return (self.root / PARTIAL / sha256).stat().st_size
        except FileNotFoundError:
            return 0

    # -- writing (the caller holds its store's lock) -----------------------------

    def partial(self, sha256: str, size: int) -> PartialBlob:
        """Start or resume receiving blob ``sha256`` of ``size`` bytes."""
        if not valid_sha256(sha256):
            raise ValueError(f"a blob name is 64 lowercase hex digits, got {sha256!r}")
        return PartialBlob(self, sha256, size)

    def add_chunks(self, sha256: str, size: int, chunks: Iterable[bytes]) -> Path:
        """Receive a whole blob from ``chunks`` (no resume), check it, store it."""
        blob = self.partial(sha256, size)
        if blob.offset:
            blob.discard()
            blob = self.partial(sha256, size)
        try:
            for chunk in chunks:
                blob.write(chunk)
        except BaseException:
            blob.discard()
            raise
        return blob.finish()

    def add_file(self, source: Path, sha256: str, size: int) -> Path:
        """Store a copy of the local file ``source`` as blob ``sha256`` (checked).

        When ``source`` is on the same file system it is hard-linked rather than
        copied, after its bytes were checked; ``source`` must then not be modified
        afterwards (it *is* the blob).
        """
        if self.has(sha256):
            return self.path(sha256)
        tmp = temp_name(self.root, "add")
        try:
            try:
                os.link(source, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copyfile(source, tmp)
            digest = hashlib.sha256()
            actual_size = 0
            with open(tmp, "rb") as fp:
                while chunk := fp.read(CHUNK):
                    digest.update(chunk)
                    actual_size += len(chunk)
            if actual_size != size or digest.hexdigest() != sha256:
                raise InvalidArchive(
                    f"file {str(source)!r} does not match its manifest entry: {actual_size} bytes with sha256 "
                    f"{digest.hexdigest()}, expected {size} bytes with sha256 {sha256}"
                )
            return self._place(tmp, sha256)
        finally:
            tmp.unlink(missing_ok=True)

    def link(self, sha256: str, dest: Path) -> None:
        """Make ``dest`` (new) the blob's bytes: a hard link, or a copy across file systems."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        source = self.path(sha256)
        try:
            os.link(source, dest)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(source, dest)

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def collect(self, referenced: Iterable[str]) -> tuple[int, int]:
        """Delete every blob not in ``referenced`` (and partial downloads of them);
        returns (blobs deleted, bytes freed). Open files and hard links elsewhere
        keep their bytes until closed or unlinked."""
        keep = set(referenced)
        count = freed = 0
        for name in list(self.names()):
            if name in keep:
                continue
            path = self.path(name)
            with suppress(OSError):
                freed += path.stat().st_size
                path.unlink()
                count += 1
        for partial in (self.root / PARTIAL).iterdir():
            if partial.name not in keep:
                partial.unlink(missing_ok=True)
        if count:
            logger.info("blob store %s: deleted %d unreferenced blobs (%.1f MB)", self.root, count, freed / 1e6)
        return count, freed

    def clean(self) -> None:
        """Remove temporary files of interrupted copies (the caller holds the lock)."""
        for path in self.root.iterdir():
            if path.name.startswith(".tmp-"):
                logger.warning("blob store %s: removing %s (leftover of an interrupted copy)", self.root, path.name)
                path.unlink(missing_ok=True)

    def _place(self, path: Path, sha256: str) -> Path:
        final = self.path(sha256)
        final.parent.mkdir(exist_ok=True)
        os.chmod(path, 0o444)
        os.replace(path, final)
        fsync_dir(final.parent)
        return final
