"""The API's engine archives: which one is current, with which generation, and the kept ones.

:class:`ArchiveStore` is the interface the resources use, so that an object store
can replace :class:`DiskArchiveStore` when the API must run as several instances.

Disk layout (``<data_dir>/archives/``)::

    state.json        {"generation": 7, "current": {...}, "previous": [{...}, ...], "history": [...]}
    .lock             file lock (recsys.locks): gunicorn's processes agree on the generation counter
    incoming/         uploads being received (a temporary file each)
    <version>.zip     the current archive and the kept previous ones

Rules:

* An upload is streamed to a temporary file under a size limit, verified completely
  (:func:`recsys.archive.verify`; the API has no engine plugins, so the engine's name
  is checked for form only), and must have a ``created_at`` newer than the current
  archive's. It then becomes current with the next generation; the former current
  is kept as the first previous one; archives beyond ``keep`` are deleted.
* A rollback makes the first previous archive current again with a new generation,
  and deletes the archive it replaces (so a second rollback goes one further back).
* ``state.json`` is replaced atomically (:func:`recsys.fsutil.write_atomic`: write,
  fsync, rename). A failed, partial or refused upload never touches the current archive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from recsys import archive
from recsys.archive import Limits, Manifest
from recsys.cluster import utcnow_iso
from recsys.errors import ArchiveConflict, ArchiveTooLarge, InvalidArchive, StoreError
from recsys.fsutil import fsync_file, write_atomic
from recsys.locks import FileLock

__all__ = [
    "ArchiveStore",
    "DiskArchiveStore",
    "Readable",
    "StoredArchive",
]

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
HISTORY_LIMIT = 100
#: Seconds to wait for another process's hold on the store's lock.
LOCK_WAIT = 30.0
#: Uploads left in incoming/ longer than this (a crashed process) are deleted at start.
STALE_UPLOAD_SECONDS = 86400.0


@dataclass(frozen=True)
class StoredArchive:
    """An archive in the store: its manifest, file, size, sha256, and the generation
    under which it became current."""

    generation: int
    file: str
    manifest: Manifest
    sha256: str
    size: int
    installed_at: str

    @property
    def version(self) -> str:
        return self.manifest.version

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``GET /v1/engine``: the manifest plus generation, sha256, size, installed_at."""
        body = self.manifest.to_dict()
        body.update(generation=self.generation, sha256=self.sha256, size=self.size, installed_at=self.installed_at)
        return body

    def to_state(self) -> dict[str, Any]:
        return {
            "generation": self.generation, "file": self.file, "sha256": self.sha256, "size": self.size,
            "installed_at": self.installed_at, "manifest": self.manifest.to_dict(),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> StoredArchive:
        return cls(
            generation=int(data["generation"]), file=str(data["file"]), manifest=Manifest.from_dict(data["manifest"]),
            sha256=str(data["sha256"]), size=int(data["size"]), installed_at=str(data["installed_at"]),
        )


class Readable(Protocol):
    """A binary stream to read an upload from (a file, or Falcon's bounded request stream)."""

    def read(self, size: int | None = ..., /) -> bytes: ...


class ArchiveStore(Protocol):
    """Where the API keeps engine archives."""

    def current(self) -> StoredArchive | None:
        """The current archive, or None before the first."""
        ...

    def generation(self) -> int | None:
        """The current generation (cheap: called on every recommendation), or None."""
        ...

    def open_current(self) -> tuple[StoredArchive, BinaryIO] | None:
        """The current archive and its bytes opened for streaming, or None."""
        ...

    def install(self, stream: Readable, *, length: int | None, only_if_empty: bool = False) -> StoredArchive | None:
        """Receive, verify and install an archive as current (see the module's rules).

        Raises ArchiveTooLarge, InvalidArchive (also for a short upload) or
        ArchiveConflict. With ``only_if_empty``, returns None when a current archive
        exists (the start engine).
        """
        ...

    def rollback(self) -> StoredArchive:
        """Make the previous archive current again (a new generation); ArchiveConflict without one."""
        ...


@dataclass
class _State:
    generation: int
    current: StoredArchive | None
    previous: list[StoredArchive]
    history: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "current": self.current.to_state() if self.current else None,
            "previous": [p.to_state() for p in self.previous],
            "history": self.history[-HISTORY_LIMIT:],
        }


class DiskArchiveStore:
    """:class:`ArchiveStore` on a local folder, safe across processes (a file lock)."""

    def __init__(self, folder: Path, limits: Limits, *, keep: int = 2) -> None:
        if keep < 2:
            raise ValueError("keep must be at least 2 (the current archive and the previous one)")
        self.folder = Path(folder)
        self.limits = limits
        self.keep = keep
        self.incoming = self.folder / "incoming"
        self._state_path = self.folder / "state.json"
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the archive store at {self.folder}: {exc}; check RECSYS_DATA_DIR") from exc
        self._cache: tuple[tuple[int, int, int], _State] | None = None
        self._lock = FileLock(
            self.folder / ".lock",
            name="the archive store's lock",
            busy="another API process is changing the archive store (an upload or a rollback); retry later",
        )
        self._cache_lock = threading.Lock()
        self._drop_stale_uploads()

    # -- reading -------------------------------------------------------------------

    def _state(self) -> _State:
        """The state, re-read only when state.json changed (it is replaced on each change)."""
        try:
            st = os.stat(self._state_path)
        except FileNotFoundError:
            return _State(0, None, [], [])
        except OSError as exc:
            raise StoreError(f"cannot read {self._state_path}: {exc}") from exc
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        state = self._read_state()
        with self._cache_lock:
            self._cache = (stamp, state)
        return state

    def _read_state(self) -> _State:
        try:
            data = json.loads(self._state_path.read_text(encoding="utf-8"))
            current = data.get("current")
            return _State(
                generation=int(data["generation"]),
                current=StoredArchive.from_state(current) if current else None,
                previous=[StoredArchive.from_state(p) for p in data.get("previous", [])],
                history=list(data.get("history", [])),
            )
        except FileNotFoundError:
            return _State(0, None, [], [])
        except (OSError, ValueError, KeyError, TypeError, InvalidArchive) as exc:
            raise StoreError(
                f"the archive store's state {self._state_path} is unreadable ({type(exc).__name__}: {exc}); "
                "restore it from a backup or remove the folder to start empty"
            ) from exc

    def current(self) -> StoredArchive | None:
        return self._state().current

    def generation(self) -> int | None:
        current = self._state().current
        return None if current is None else current.generation

    def previous(self) -> StoredArchive | None:
        """The archive a rollback would make current, or None."""
        previous = self._state().previous
        return previous[0] if previous else None

    def open_current(self) -> tuple[StoredArchive, BinaryIO] | None:
        missing = ""
        for _ in range(3):  # a concurrent rollback may delete the file between reading and opening
            current = self.current()
            if current is None:
                return None
            try:
                return current, open(self.folder / current.file, "rb")  # the caller streams and closes it
            except FileNotFoundError:
                missing = current.file
                self._cache = None
                time.sleep(0.01)
        raise StoreError(f"the current archive's file {missing} is missing from {self.folder}; upload a new one")

    # -- changing ------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_State]:
        with self._lock.hold(LOCK_WAIT):
            yield self._read_state()

    def install(self, stream: Readable, *, length: int | None, only_if_empty: bool = False) -> StoredArchive | None:
        if only_if_empty and self.current() is not None:
            return None
        if length is not None and length > self.limits.max_bytes:
            raise ArchiveTooLarge(f"the archive ({length} bytes) is larger than the limit of {self.limits.max_bytes}")
        part = self._receive(stream, length)
        try:
            verified = archive.verify(part, self.limits, engines=None)
            if only_if_empty and self.current() is not None:
                return None  # another process installed one meanwhile (several API processes start at once)
            self._check_newer(verified.manifest, self.current())  # fail early; checked again under the lock
            fsync_file(part)
            with self._locked() as state:
                if only_if_empty and state.current is not None:
                    return None
                self._check_newer(verified.manifest, state.current)
                name = f"{verified.manifest.version}.zip"
                os.replace(part, self.folder / name)
                new = StoredArchive(
                    generation=state.generation + 1, file=name, manifest=verified.manifest,
                    sha256=verified.sha256, size=verified.size, installed_at=utcnow_iso(),
                )
                previous = ([state.current] if state.current else []) + state.previous
                kept, dropped = previous[: self.keep - 1], previous[self.keep - 1:]
                self._commit(_State(new.generation, new, kept, state.history), new, "upload")
                self._delete_files(dropped, keep=[new, *kept])
                return new
        finally:
            part.unlink(missing_ok=True)

    def rollback(self) -> StoredArchive:
        with self._locked() as state:
            if not state.previous:
                raise ArchiveConflict(
                    "there is no previous archive to roll back to"
                    + ("" if state.current else " (no engine has been installed yet)")
                )
            target = state.previous[0]
            if not (self.folder / target.file).exists():
                raise StoreError(f"the previous archive's file {target.file} is missing from {self.folder}")
            new = replace(target, generation=state.generation + 1, installed_at=utcnow_iso())
            self._commit(_State(new.generation, new, state.previous[1:], state.history), new, "rollback")
            if state.current is not None:
                self._delete_files([state.current], keep=[new, *state.previous[1:]])
            return new

    def _check_newer(self, manifest: Manifest, current: StoredArchive | None) -> None:
        if current is not None and manifest.created <= current.manifest.created:
            raise ArchiveConflict(
                f"archive {manifest.version} (created {manifest.created_at}) is not newer than the current "
                f"archive {current.version} (created {current.manifest.created_at}); upload a newer build"
            )

    def _receive(self, stream: Readable, length: int | None) -> Path:
        """Copy the upload into incoming/ under the size limit; returns the temporary file."""
        fd, name = tempfile.mkstemp(dir=self.incoming, suffix=".zip.part")
        part = Path(name)
        received = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > self.limits.max_bytes:
                        raise ArchiveTooLarge(f"the archive is larger than the limit of {self.limits.max_bytes} bytes")
                    out.write(chunk)
            if length is not None and received != length:
                raise InvalidArchive(f"the upload ended after {received} of {length} bytes; send it again")
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return part

    def _commit(self, state: _State, new: StoredArchive, action: str) -> None:
        event = {"generation": new.generation, "version": new.version, "action": action, "at": new.installed_at}
        state.history = [*state.history, event][-HISTORY_LIMIT:]
        write_atomic(self._state_path, json.dumps(state.to_json(), indent=1).encode("utf-8"))
        self._cache = None
        logger.info("engine archive %s is current as generation %d (%s)", new.version, new.generation, action)

    def _delete_files(self, archives: list[StoredArchive], *, keep: list[StoredArchive]) -> None:
        still_used = {a.file for a in keep}
        for old in archives:
            if old.file not in still_used:
                (self.folder / old.file).unlink(missing_ok=True)

    def _drop_stale_uploads(self) -> None:
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        for part in self.incoming.glob("*.zip.part"):
            with contextlib.suppress(OSError):
                if part.stat().st_mtime < cutoff:
                    part.unlink()
