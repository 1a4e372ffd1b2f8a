"""The API's engine store: content-addressed files, the kept versions, the current one.

:class:`ArchiveStore` is the interface the resources use, so that an object store
can replace :class:`DiskArchiveStore` when the API must run as several instances.

An engine version is its manifest, identified by ``manifest_sha256`` (the sha256 of
the manifest's exact bytes, which are kept as they came: never re-serialised). Its
files are blobs named by their sha256 (:mod:`recsys.blobs`), shared with every
other kept version that has the same file, so an upload that changes 1% of an
engine stores 1% more bytes, and a *thin* upload carries only those.

Disk layout (``<data_dir>/archives/``)::

    state.json        {"format": 2, "generation": 7, "versions": [{...}, ...], "history": [...]}
                      versions: the current one first, then the previous ones
                      (RECSYS_KEEP_ENGINES in all), each {"generation", "manifest_sha256",
                      "bytes", "installed_at", "manifest"}
    .lock             file lock (recsys.locks): every change (upload, rollback, migration)
    blobs/            a recsys.blobs.BlobStore: every file of every kept version, and
                      each kept version's manifest bytes
    full/<m>.zip      the full, self-contained archive of the version whose manifest_sha256
                      is <m>, assembled from the blobs on its first download, with
                      full/<m>.json {"sha256", "size"} beside it
    full/.lock        held while a full archive is assembled
    incoming/         uploads being received: a temporary file each, and a staging blob
                      folder (.tmp-stage-*) for the files an upload carries

Rules:

* An upload (full or thin) is streamed to a temporary file under a size limit and
  verified completely (:func:`recsys.archive.verify`; the API has no engine plugins,
  so the engine's name is checked for form only). A file the manifest lists but the
  zip leaves out must be a blob here already (same sha256 and size), else
  MissingFiles (409) lists every such file. Its ``created_at`` must be newer than the
  current version's. The files it carries that the store lacks are copied into a
  staging blob folder (each checked against its sha256; a mismatch is refused and
  deleted), then, under the lock, checked again and moved into ``blobs/`` with the
  manifest's bytes; then ``state.json`` names the version current with the next
  generation. Versions beyond ``keep`` are dropped, then every blob no kept version
  references and the full archives of dropped versions are deleted.
* A rollback makes the first previous version current again with a new generation
  and drops the version it replaces (so a second rollback goes one further back):
  no file is copied, the blobs are there.
* ``GET /v1/engine/archive`` serves :meth:`DiskArchiveStore.open_current`: the current
  version's full archive, assembled once per version by
  :func:`recsys.archive.write_archive` (the same bytes each time, whichever process
  or restart assembles it: ETags and Range requests hold) and kept until the version
  is dropped.
* ``state.json`` is replaced atomically (:func:`recsys.fsutil.write_atomic`) and last:
  blobs go in before it names them, and are deleted only after it stopped naming
  them. A failed, partial or refused upload never changes the current version.
* A first-wave store (``state.json`` entries with ``"file": "<version>.zip"``) is
  migrated when the store is opened (in gunicorn's master, before any worker forks),
  under the lock: each kept archive's files into blobs, then ``state.json``, then the
  old zips are deleted. Interrupted, it starts again at the next start (blobs already
  there are kept); a second run finds nothing to do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from recsys import archive
from recsys.archive import FileEntry, Limits, Manifest, VerifiedArchive
from recsys.blobs import BlobStore, valid_sha256
from recsys.cluster import utcnow_iso
from recsys.errors import (
    ArchiveConflict,
    ArchiveTooLarge,
    InvalidArchive,
    MissingFiles,
    NothingToRollBack,
    QualityGate,
    StoreError,
    UnknownFile,
)
from recsys.fsutil import fsync_dir, temp_name, write_atomic
from recsys.locks import FileLock
from recsys.manifest import valid_version
from recsys.quality import regression
from recsys.safezip import open_zip

__all__ = [
    "ArchiveStore",
    "DiskArchiveStore",
    "Readable",
    "StoredVersion",
]

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
HISTORY_LIMIT = 100
#: The layout of state.json written by this module (the first wave's had none).
STATE_FORMAT = 2
#: Seconds to wait for another process's hold on the store's lock.
LOCK_WAIT = 30.0
#: Seconds to wait for another process that assembles a full archive (a large one takes a while).
ASSEMBLY_WAIT = 300.0
#: Seconds to wait for another process migrating a first-wave store.
MIGRATION_WAIT = 1800.0
#: Uploads, staging folders and assemblies left longer than this (a crashed process) are deleted at start.
STALE_UPLOAD_SECONDS = 86400.0


@dataclass(frozen=True)
class StoredVersion:
    """A kept engine version: its manifest and identity, size, and the generation
    under which it became current. ``sha256`` and ``size`` are those of its full
    archive once assembled (``GET /v1/engine/archive``), None before."""

    generation: int
    manifest: Manifest
    manifest_sha256: str
    engine_bytes: int
    installed_at: str
    sha256: str | None = None
    size: int | None = None
    #: What the quality gate made of this version when it became current (:func:`gate_outcome`):
    #: ``{"outcome": "passed" | "forced" | "not_applied", ...}``; None for versions installed
    #: before the gate existed.
    gate: dict[str, Any] | None = None

    @property
    def version(self) -> str:
        return self.manifest.version

    def blob_names(self) -> set[str]:
        """The blobs this version needs: its files and its manifest."""
        return {entry.sha256 for entry in self.manifest.files} | {self.manifest_sha256}

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``GET /v1/engine``: the manifest plus generation, manifest_sha256,
        bytes, installed_at, and the full archive's sha256 and size (null until assembled)."""
        body = self.manifest.to_dict()
        body.update(
            generation=self.generation, manifest_sha256=self.manifest_sha256, bytes=self.engine_bytes,
            installed_at=self.installed_at, sha256=self.sha256, size=self.size,
        )
        if self.gate is not None:
            body["quality_gate"] = self.gate
        return body

    def to_state(self) -> dict[str, Any]:
        return {
            "generation": self.generation, "manifest_sha256": self.manifest_sha256, "bytes": self.engine_bytes,
            "installed_at": self.installed_at, "manifest": self.manifest.to_dict(),
            **({} if self.gate is None else {"gate": self.gate}),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> StoredVersion:
        manifest_sha256 = str(data["manifest_sha256"])
        if not valid_sha256(manifest_sha256):
            raise ValueError(f"manifest_sha256 {manifest_sha256!r} is not a sha256")
        return cls(
            generation=int(data["generation"]), manifest=Manifest.from_dict(data["manifest"]),
            manifest_sha256=manifest_sha256, engine_bytes=int(data["bytes"]),
            installed_at=str(data["installed_at"]),
            gate=dict(data["gate"]) if isinstance(data.get("gate"), dict) else None,
        )


class Readable(Protocol):
    """A binary stream to read an upload from (a file, or Falcon's bounded request stream)."""

    def read(self, size: int | None = ..., /) -> bytes: ...


class ArchiveStore(Protocol):
    """Where the API keeps engine versions."""

    def current(self) -> StoredVersion | None:
        """The current version, or None before the first."""
        ...

    def generation(self) -> int | None:
        """The current generation (cheap: called on every recommendation), or None."""
        ...

    def open_current(self) -> tuple[StoredVersion, BinaryIO] | None:
        """The current version (with its full archive's sha256 and size) and that
        archive opened for streaming (assembled first if needed), or None."""
        ...

    def open_file(self, sha256: str) -> tuple[BinaryIO, int]:
        """A file (or manifest) of a kept version, opened, and its size; UnknownFile otherwise."""
        ...

    def install(self, stream: Readable, *, length: int | None, only_if_empty: bool = False,
                force: bool = False) -> StoredVersion | None:
        """Receive, verify and install a full or thin archive as current (see the module's rules).

        Raises ArchiveTooLarge, InvalidArchive (also for a short upload), MissingFiles
        or ArchiveConflict. With ``only_if_empty``, returns None when a current
        version exists (the start engine).
        """
        ...

    def rollback(self) -> StoredVersion:
        """Make the previous version current again (a new generation); ArchiveConflict without one."""
        ...


@dataclass
class _State:
    generation: int
    versions: list[StoredVersion]
    history: list[dict[str, Any]]
    _referenced: frozenset[str] | None = field(default=None, repr=False)

    @property
    def current(self) -> StoredVersion | None:
        return self.versions[0] if self.versions else None

    @property
    def previous(self) -> list[StoredVersion]:
        return self.versions[1:]

    @property
    def referenced(self) -> frozenset[str]:
        """Every blob a kept version needs."""
        if self._referenced is None:
            self._referenced = frozenset(name for v in self.versions for name in v.blob_names())
        return self._referenced

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "generation": self.generation,
            "versions": [v.to_state() for v in self.versions],
            "history": self.history[-HISTORY_LIMIT:],
        }


def _first_wave(data: Any) -> bool:
    """Whether decoded state.json is the first wave's (``current``/``previous`` with zip files)."""
    return isinstance(data, dict) and "versions" not in data and ("current" in data or "previous" in data)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class DiskArchiveStore:
    """:class:`ArchiveStore` on a local folder, safe across processes (a file lock)."""

    def __init__(self, folder: Path, limits: Limits, *, keep: int = 3, quality_tolerance: float = 0.02) -> None:
        if keep < 2:
            raise ValueError("keep must be at least 2 (the current version and the previous one)")
        self.folder = Path(folder)
        self.limits = limits
        self.keep = keep
        self.quality_tolerance = quality_tolerance
        self.incoming = self.folder / "incoming"
        self.full = self.folder / "full"
        self._state_path = self.folder / "state.json"
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
            self.full.mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the archive store at {self.folder}: {exc}; check RECSYS_DATA_DIR") from exc
        self.blobs = BlobStore(self.folder / "blobs")
        self._cache: tuple[tuple[int, int, int], _State] | None = None
        self._lock = FileLock(
            self.folder / ".lock",
            name="the archive store's lock",
            busy="another API process is changing the archive store (an upload or a rollback); retry later",
        )
        self._assembly_lock = FileLock(
            self.full / ".lock",
            name="the full archive's lock",
            busy="another API process is assembling the engine's full archive; retry later",
        )
        self._cache_lock = threading.Lock()
        #: manifest_sha256 -> (sha256, size) of assembled full archives (the same bytes whenever assembled).
        self._full_info: dict[str, tuple[str, int]] = {}
        self._drop_stale()
        self._migrate()

    # -- reading -------------------------------------------------------------------

    def _state(self) -> _State:
        """The state, re-read only when state.json changed (it is replaced on each change)."""
        try:
            st = os.stat(self._state_path)
        except FileNotFoundError:
            return _State(0, [], [])
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

    def _load(self) -> Any:
        """Decoded state.json, None when there is none."""
        try:
            return json.loads(self._state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise self._unreadable(exc) from exc

    def _unreadable(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"the archive store's state {self._state_path} is unreadable ({type(exc).__name__}: {exc}); "
            "restore it from a backup or remove the folder to start empty"
        )

    def _read_state(self) -> _State:
        data = self._load()
        if data is None:
            return _State(0, [], [])
        if _first_wave(data):
            raise StoreError(
                f"the archive store's state {self._state_path} has the first-wave layout (archive files); "
                "restart the API to migrate it"
            )
        try:
            return _State(
                generation=int(data["generation"]),
                versions=[StoredVersion.from_state(v) for v in data["versions"]],
                history=list(data.get("history", [])),
            )
        except (ValueError, KeyError, TypeError, InvalidArchive) as exc:
            raise self._unreadable(exc) from exc

    def current(self) -> StoredVersion | None:
        current = self._state().current
        return None if current is None else self._described(current)

    def generation(self) -> int | None:
        current = self._state().current
        return None if current is None else current.generation

    def versions(self) -> list[StoredVersion]:
        """Every kept version, the current one first."""
        return list(self._state().versions)

    def previous(self) -> StoredVersion | None:
        """The version a rollback would make current, or None."""
        versions = self._state().versions
        return versions[1] if len(versions) > 1 else None

    def open_file(self, sha256: str) -> tuple[BinaryIO, int]:
        if not valid_sha256(sha256):
            shown = sha256 if len(sha256) <= 80 else sha256[:80] + "..."
            raise UnknownFile(
                f"{shown!r} names no file: files are named by their sha256 (64 lowercase hex digits), "
                "as listed in GET /v1/engine"
            )
        if sha256 not in self._state().referenced:
            raise self._unknown(sha256)
        try:
            fp = self.blobs.open(sha256)  # the caller streams and closes it
        except FileNotFoundError:
            self._cache = None  # a change may just have dropped it
            if sha256 in self._state().referenced:
                raise StoreError(
                    f"file {sha256} of a kept engine version is missing from {self.blobs.root}; "
                    "upload the engine again"
                ) from None
            raise self._unknown(sha256) from None
        return fp, os.fstat(fp.fileno()).st_size

    @staticmethod
    def _unknown(sha256: str) -> UnknownFile:
        return UnknownFile(
            f"no engine version the API keeps has a file with sha256 {sha256}; "
            "GET /v1/engine lists the current version's files"
        )

    # -- the full archive ------------------------------------------------------------

    def open_current(self) -> tuple[StoredVersion, BinaryIO] | None:
        for _ in range(3):  # a concurrent change may drop the version while it is opened or assembled
            current = self._state().current
            if current is None:
                return None
            with contextlib.suppress(FileNotFoundError):
                return self._open_full(current)
            try:
                self._assemble(current)
                return self._open_full(current)
            except FileNotFoundError:
                self._cache = None
                time.sleep(0.01)
        raise StoreError(
            f"the current engine's full archive could not be assembled in {self.full}: its version kept being "
            "replaced; retry"
        )

    def _full_zip(self, manifest_sha256: str) -> Path:
        return self.full / f"{manifest_sha256}.zip"

    def _full_sidecar(self, manifest_sha256: str) -> Path:
        return self.full / f"{manifest_sha256}.json"

    def _described(self, version: StoredVersion) -> StoredVersion:
        """``version`` with its full archive's sha256 and size when it has been assembled."""
        info = self._read_full_info(version.manifest_sha256)
        return version if info is None else replace(version, sha256=info[0], size=info[1])

    def _read_full_info(self, manifest_sha256: str) -> tuple[str, int] | None:
        if not self._full_zip(manifest_sha256).exists():
            self._full_info.pop(manifest_sha256, None)
            return None
        known = self._full_info.get(manifest_sha256)
        if known is not None:
            return known
        try:
            data = json.loads(self._full_sidecar(manifest_sha256).read_text(encoding="utf-8"))
            info = (str(data["sha256"]), int(data["size"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # being written or deleted: not assembled, as far as anyone can tell
        self._full_info[manifest_sha256] = info
        return info

    def _open_full(self, version: StoredVersion) -> tuple[StoredVersion, BinaryIO]:
        """The version's full archive opened; FileNotFoundError when it is not assembled."""
        fp = open(self._full_zip(version.manifest_sha256), "rb")  # noqa: SIM115 - the caller streams and closes it
        info = self._read_full_info(version.manifest_sha256)
        if info is None:
            fp.close()
            raise FileNotFoundError(self._full_sidecar(version.manifest_sha256))
        return replace(version, sha256=info[0], size=info[1]), fp

    def _assemble(self, version: StoredVersion) -> None:
        """Write the version's full archive from the blobs, once (other processes wait
        and find it done). FileNotFoundError when the version is no longer kept."""
        m = version.manifest_sha256
        with self._assembly_lock.hold(ASSEMBLY_WAIT):
            if self._read_full_info(m) is not None:
                return
            if m not in {v.manifest_sha256 for v in self._read_state().versions}:
                raise FileNotFoundError(self._full_zip(m))
            started = time.monotonic()
            tmp = temp_name(self.full, "assemble")
            try:
                manifest_bytes = self.blobs.path(m).read_bytes()
                built = archive.write_archive(tmp, manifest_bytes, version.manifest,
                                              lambda entry: self.blobs.open(entry.sha256))
                write_atomic(self._full_sidecar(m), json.dumps({"sha256": built.sha256, "size": built.size}).encode())
                os.replace(tmp, self._full_zip(m))
                fsync_dir(self.full)
            except FileNotFoundError as exc:
                if m in {v.manifest_sha256 for v in self._read_state().versions}:
                    raise StoreError(
                        f"cannot assemble the full archive of engine version {version.version}: its file "
                        f"{exc.filename} is missing from {self.blobs.root}; upload the engine again"
                    ) from exc
                raise  # the version was dropped meanwhile
            finally:
                tmp.unlink(missing_ok=True)
            if m not in {v.manifest_sha256 for v in self._read_state().versions}:  # dropped meanwhile
                self._delete_full(m)
                raise FileNotFoundError(self._full_zip(m))
            self._full_info[m] = (built.sha256, built.size)
        logger.info(
            "assembled the full archive of engine version %s (manifest %s): %d files, %s, sha256 %s, in %.1fs",
            version.version, m, len(version.manifest.files), _mb(built.size), built.sha256,
            time.monotonic() - started,
        )

    def _delete_full(self, manifest_sha256: str) -> bool:
        self._full_info.pop(manifest_sha256, None)
        existed = self._full_zip(manifest_sha256).exists()
        self._full_sidecar(manifest_sha256).unlink(missing_ok=True)
        self._full_zip(manifest_sha256).unlink(missing_ok=True)
        return existed

    # -- changing ------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_State]:
        with self._lock.hold(LOCK_WAIT):
            self.blobs.clean()  # leftovers of a process that died while copying a blob in
            yield self._read_state()

    def _have(self, entry: FileEntry) -> bool:
        """Whether the store holds this file (by sha256 and size)."""
        return self.blobs.has(entry.sha256) and self.blobs.size(entry.sha256) == entry.size

    def install(self, stream: Readable, *, length: int | None, only_if_empty: bool = False,
                force: bool = False) -> StoredVersion | None:
        if only_if_empty and self.current() is not None:
            return None
        if length is not None and length > self.limits.max_bytes:
            raise ArchiveTooLarge(f"the archive ({length} bytes) is larger than the limit of {self.limits.max_bytes}")
        started = time.monotonic()
        part = self._receive(stream, length)
        staging: BlobStore | None = None
        try:
            verified = archive.verify(part, self.limits, engines=None, have=self._have)
            if only_if_empty and self.current() is not None:
                return None  # another process installed one meanwhile (several API processes start at once)
            current = self._state().current
            self._check_newer(verified.manifest, current)  # fail early; checked again under the lock
            if not force:
                self._check_quality(verified.manifest, current, force=False)
            staging = self._stage(verified)
            with self._locked() as state:
                if only_if_empty and state.current is not None:
                    return None
                self._check_newer(verified.manifest, state.current)
                gate = self._check_quality(verified.manifest, state.current, force=force)
                received, reused = self._take(verified, staging)
                new = StoredVersion(
                    generation=state.generation + 1, manifest=verified.manifest,
                    manifest_sha256=verified.manifest_sha256,
                    engine_bytes=verified.manifest.total_size + len(verified.manifest_bytes),
                    installed_at=utcnow_iso(), gate=gate,
                )
                kept = [new, *state.versions][: self.keep]
                self._commit(_State(new.generation, kept, state.history), new, "upload")
                left_out = sum(1 for e in verified.manifest.files if e.path not in verified.members)
                logger.info(
                    "upload of engine version %s (manifest %s, %s archive of %s): received %d files (%s), "
                    "reused %d files (%s) the store already held, %d of them left out of the archive; "
                    "current as generation %d after %.1fs",
                    new.version, new.manifest_sha256, "thin" if verified.thin else "full", _mb(verified.size),
                    len(received), _mb(sum(e.size for e in received)), len(reused),
                    _mb(sum(e.size for e in reused)), left_out, new.generation, time.monotonic() - started,
                )
                self._collect(kept, dropped=[*state.versions][self.keep - 1:])
                return self._described(new)
        finally:
            part.unlink(missing_ok=True)
            if staging is not None:
                shutil.rmtree(staging.root, ignore_errors=True)

    def rollback(self) -> StoredVersion:
        with self._locked() as state:
            if not state.previous:
                raise NothingToRollBack(
                    "there is no previous engine version to roll back to"
                    + ("" if state.current else " (no engine has been installed yet)")
                )
            target = state.previous[0]
            absent = sorted(name for name in target.blob_names() if not self.blobs.has(name))
            if absent:
                raise StoreError(
                    f"the previous engine version {target.version} lacks {len(absent)} of its files in "
                    f"{self.blobs.root} (e.g. {absent[0]}); upload the engine again instead"
                )
            new = replace(target, generation=state.generation + 1, installed_at=utcnow_iso(), sha256=None, size=None,
                          gate={"outcome": "not_applied", "reason": "a rollback (it installs no new build)"})
            kept = [new, *state.previous[1:]]
            self._commit(_State(new.generation, kept, state.history), new, "rollback")
            logger.info("rollback: engine version %s (manifest %s) is current again as generation %d; no file copied",
                        new.version, new.manifest_sha256, new.generation)
            self._collect(kept, dropped=[state.versions[0]])
            return self._described(new)

    def _check_quality(self, manifest: Manifest, current: StoredVersion | None, *, force: bool) -> dict[str, Any]:
        """QualityGate when the upload's comparison shows a metric worse than the current
        engine's by more than the tolerance, unless ``force``; else the gate's outcome, as
        ``GET /v1/engine`` shows it. Not applied to the first engine, a change of plugin,
        an upload that compared nothing (see recsys.quality), and a live-update apply
        (manifest ``kind: "apply"``)."""
        if current is None:
            return {"outcome": "not_applied", "reason": "the first engine"}
        if manifest.kind == "apply":  # checked by its builder for loading and counts
            return {"outcome": "not_applied", "reason": "a live-update apply"}
        if current.manifest.engine != manifest.engine:
            return {"outcome": "not_applied",
                    "reason": f"a change of engine plugin ({current.manifest.engine} to {manifest.engine})"}
        if not (manifest.quality or {}).get("metrics"):
            return {"outcome": "not_applied",
                    "reason": "the build compared nothing (no engine of its plugin to measure against, or no labels)"}
        against = (manifest.quality or {}).get("against")
        worse = regression(manifest.quality, self.quality_tolerance)
        if worse is None:
            return {"outcome": "passed", "against": against, "tolerance": self.quality_tolerance}
        metric, new, was = worse
        if force:
            logger.warning("upload of engine version %s forced past the quality gate: %s %.4f against %.4f (%s)",
                           manifest.version, metric, new, was, against)
            return {"outcome": "forced", "against": against, "tolerance": self.quality_tolerance,
                    "metric": metric, "new": new, "current": was}
        logger.warning("upload of engine version %s refused by the quality gate: %s %.4f against %.4f (%s)",
                       manifest.version, metric, new, was, against)
        raise QualityGate(
            f"engine version {manifest.version} is worse than the engine it was measured against ({against}) on "
            f"{metric}: {new:.4f} against {was:.4f}, more than RECSYS_QUALITY_TOLERANCE={self.quality_tolerance:g}; "
            "check the corpus (a bad dump?), or upload with ?force=true to make it current anyway",
            metric=metric, new=new, current=was, tolerance=self.quality_tolerance,
        )

    def _check_newer(self, manifest: Manifest, current: StoredVersion | None) -> None:
        if current is not None and manifest.created <= current.manifest.created:
            raise ArchiveConflict(
                f"archive {manifest.version} (created {manifest.created_at}) is not newer than the current "
                f"engine {current.version} (created {current.manifest.created_at}); upload a newer build"
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

    def _stage(self, verified: VerifiedArchive) -> BlobStore | None:
        """Copy the files the upload carries and the store lacks into a staging blob
        folder under incoming/ (each checked against its sha256), outside the lock."""
        needed = _unique(e for e in verified.manifest.files if e.path in verified.members and not self._have(e))
        if not needed:
            return None
        staging = BlobStore(temp_name(self.incoming, "stage"))
        try:
            with open_zip(verified.path, self.limits) as zipped:
                for entry in needed:
                    staging.add_chunks(entry.sha256, entry.size, zipped.read(entry.path))
        except BaseException:
            shutil.rmtree(staging.root, ignore_errors=True)
            raise
        return staging

    def _take(self, verified: VerifiedArchive, staging: BlobStore | None) -> tuple[list[FileEntry], list[FileEntry]]:
        """Under the lock: move the staged files into the blobs, with the manifest's
        bytes; returns (files received, files reused). MissingFiles when a file left
        out of the archive is no longer here (a change since deleted it)."""
        files = _unique(verified.manifest.files)
        lacking = [e for e in files if not self._have(e)]
        missing = [e for e in lacking if e.path not in verified.members]
        if missing:
            raise MissingFiles(
                f"the thin archive leaves out {len(missing)} file(s) this store no longer holds "
                f"(e.g. {missing[0].path!r}): another change deleted them; send them too (upload the full archive)",
                [e.to_dict() for e in missing],
            )
        with contextlib.ExitStack() as stack:
            zipped = None
            for entry in lacking:
                if staging is not None and staging.has(entry.sha256):
                    self.blobs.add_file(staging.path(entry.sha256), entry.sha256, entry.size)
                    continue
                if zipped is None:  # deleted by another change after staging: copy it from the upload
                    zipped = stack.enter_context(open_zip(verified.path, self.limits))
                self.blobs.add_chunks(entry.sha256, entry.size, zipped.read(entry.path))
        if not self.blobs.has(verified.manifest_sha256):
            self.blobs.add_chunks(verified.manifest_sha256, len(verified.manifest_bytes), [verified.manifest_bytes])
        received = {e.sha256 for e in lacking}
        return lacking, [e for e in verified.manifest.files if e.sha256 not in received]

    def _commit(self, state: _State, new: StoredVersion, action: str) -> None:
        event = {"generation": new.generation, "version": new.version, "manifest_sha256": new.manifest_sha256,
                 "action": action, "at": new.installed_at}
        state.history = [*state.history, event][-HISTORY_LIMIT:]
        self._write_state(state)
        logger.info("engine version %s is current as generation %d (%s)", new.version, new.generation, action)

    def _write_state(self, state: _State) -> None:
        write_atomic(self._state_path, json.dumps(state.to_json(), indent=1).encode("utf-8"))
        self._cache = None

    def _collect(self, kept: list[StoredVersion], *, dropped: Iterable[StoredVersion] = ()) -> None:
        """Delete what no kept version needs: dropped versions' full archives, then blobs."""
        names = {v.manifest_sha256 for v in kept}
        for old in dropped:
            if old.manifest_sha256 not in names:
                logger.info("dropped engine version %s (manifest %s, generation %d) from the archive store",
                            old.version, old.manifest_sha256, old.generation)
        for path in list(self.full.iterdir()):
            stem, suffix = path.stem, path.suffix
            if suffix in (".zip", ".json") and valid_sha256(stem) and stem not in names and self._delete_full(stem):
                logger.info("deleted the full archive of dropped engine version (manifest %s)", stem)
        count, freed = self.blobs.collect(name for v in kept for name in v.blob_names())
        logger.info("archive store: %d versions kept; deleted %d files no kept version uses (%s)",
                    len(kept), count, _mb(freed))

    def _drop_stale(self) -> None:
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        for path in [*self.incoming.iterdir(), *self.full.glob(".tmp-*")]:
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime >= cutoff:
                    continue
                if path.name.endswith(".zip.part") or path.name.startswith(".tmp-"):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()

    # -- the first wave's store ----------------------------------------------------------

    def _migrate(self) -> None:
        """Convert a first-wave store (see the module's rules); then delete its old zips."""
        try:
            data = self._load()
        except StoreError:
            return  # unreadable: said by every read of the state, with what to do
        if _first_wave(data):
            with self._lock.hold(MIGRATION_WAIT):
                data = self._load()
                if _first_wave(data):
                    self._migrate_first_wave(data)
        self._drop_old_zips()

    def _migrate_first_wave(self, data: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            entries = ([data["current"]] if data.get("current") else []) + list(data.get("previous") or [])
            generation = int(data["generation"])
            history = list(data.get("history") or [])
        except (KeyError, TypeError, ValueError) as exc:
            raise self._unreadable(exc) from exc
        logger.info("archive store %s has the first-wave layout: migrating %d archives into content-addressed "
                    "files", self.folder, len(entries))
        self.blobs.clean()
        versions: list[StoredVersion] = []
        for index, entry in enumerate(entries[: self.keep]):
            try:
                name = str(entry["file"])
                if Path(name).name != name or not name.endswith(".zip"):
                    raise InvalidArchive(f"{name!r} is not an archive file name")
                version = self._adopt(self.folder / name, int(entry["generation"]), str(entry["installed_at"]))
            except (KeyError, TypeError, ValueError, InvalidArchive, OSError) as exc:
                reason = exc.message if isinstance(exc, InvalidArchive) else f"{type(exc).__name__}: {exc}"
                if index == 0:
                    raise StoreError(
                        f"cannot migrate the archive store {self.folder}: its current archive failed ({reason}); "
                        "restore the file from a backup, or remove the folder to start empty"
                    ) from exc
                logger.warning("migration of %s: dropping previous archive %r, which failed (%s)",
                               self.folder, entry.get("file") if isinstance(entry, dict) else entry, reason)
                continue
            versions.append(version)
        state = _State(generation, versions, history)
        self._write_state(state)  # last: every blob it names is in place
        self._collect(versions)
        deleted = self._drop_old_zips()
        logger.info(
            "migrated archive store %s: %d versions kept (current %s, generation %d), %d files in blobs, "
            "deleted %d old archives, in %.1fs",
            self.folder, len(versions), versions[0].version if versions else None, generation,
            len(state.referenced), deleted, time.monotonic() - started,
        )

    def _adopt(self, path: Path, generation: int, installed_at: str) -> StoredVersion:
        """Put a first-wave archive's files and manifest into the blobs."""
        verified = archive.verify(path, self.limits, engines=None)
        with open_zip(path, self.limits) as zipped:
            for entry in _unique(verified.manifest.files):
                if not self._have(entry):
                    self.blobs.add_chunks(entry.sha256, entry.size, zipped.read(entry.path))
        if not self.blobs.has(verified.manifest_sha256):
            self.blobs.add_chunks(verified.manifest_sha256, len(verified.manifest_bytes), [verified.manifest_bytes])
        logger.info("migrated engine version %s (generation %d) from %s: manifest %s", verified.manifest.version,
                    generation, path.name, verified.manifest_sha256)
        return StoredVersion(
            generation=generation, manifest=verified.manifest, manifest_sha256=verified.manifest_sha256,
            engine_bytes=verified.manifest.total_size + len(verified.manifest_bytes), installed_at=installed_at,
        )

    def _drop_old_zips(self) -> int:
        """Delete first-wave archives (``<version>.zip`` in the top folder; the store writes none there now)."""
        deleted = 0
        for path in self.folder.glob("*.zip"):
            if not valid_version(path.stem):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                deleted += 1
                logger.info("archive store %s: deleted the first-wave archive %s (its files are in blobs/)",
                            self.folder, path.name)
        return deleted


def _unique(entries: Iterable[FileEntry]) -> list[FileEntry]:
    """The entries with distinct sha256s (an engine may hold two identical files), in order."""
    seen: set[str] = set()
    out = []
    for entry in entries:
        if entry.sha256 not in seen:
            seen.add(entry.sha256)
            out.append(entry)
    return out
