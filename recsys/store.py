"""The engine store: one machine's engines on disk, assembled from content-addressed blobs.

Layout under ``root`` (``<RECSYS_DATA_DIR>/engines``)::

    blobs/                     every file of the kept versions, and their manifests, named by
                               sha256 (:class:`recsys.blobs.BlobStore`); ``blobs/.partial/``
                               holds interrupted downloads, resumed by the next attempt
    versions/<version>/        an engine: hard links to its blobs, under the paths its
                               manifest lists, plus ``manifest.json`` (the manifest's exact
                               bytes, itself a link to the manifest's blob)
    CURRENT                    JSON {"version", "generation", "sha256", "manifest_sha256",
                               "installed_at"}, replaced atomically (write temp + fsync + os.replace)
    history                    JSON list of activations, oldest first (for pruning and
                               to remember each version's archive sha256)
    .lock                      machine-wide file lock (recsys.locks, flock) for installs
    .tmp-*                     leftovers of a crashed install, removed at start

A version's identity is its ``manifest_sha256`` (the sha256 of the exact manifest bytes);
its folder is named by the manifest's ``version`` (the build id). A version folder is
assembled in ``versions/.tmp-assemble-*`` and renamed into place only when every file
its manifest lists is a blob of the right size (each blob was checked against its
sha256 on the way in, :mod:`recsys.blobs`), so a partial set of files never becomes a
version, let alone current. Versions that share files share their bytes on disk.

Ways in, all under the lock:

* :meth:`EngineStore.install`: an archive, full (a first-wave API's download, an engine
  built here) or thin (its left-out files already blobs here): its files go into the
  blobs (checked), then the version is assembled and made current;
* :meth:`EngineStore.install_version`: a version whose manifest and files were put into
  :attr:`EngineStore.blobs` by the caller (the workers' rollout downloads only the
  blobs :meth:`EngineStore.missing` names);
* :meth:`EngineStore.activate`: a version already on disk (a rollback).

Several processes of one machine share a store: one installs a version (holding the
lock) while the others wait for the lock and then find it installed. The current
version and the ones before it are kept (``keep`` in all, counted by most recent
activation, so a rollback needs no download; ``RECSYS_KEEP_ENGINES``); older versions
are pruned, then every blob no kept version references is deleted
(:meth:`recsys.blobs.BlobStore.collect`: a process still serving a pruned version
keeps its open files). ``generation`` is the API's number of the change that made
this version current (0: unknown, e.g. a local install).

**First-wave stores** (``versions/`` of plain files, no ``blobs/``) keep working: at
open (when no other process holds the lock), before each install and before a rollout
computes what it lacks (:meth:`EngineStore.adopt`), every file of a
kept version that is not yet its blob is adopted: hashed and hard-linked into the
blobs (:meth:`~recsys.blobs.BlobStore.add_file`; a file whose bytes do not match its
manifest is left alone and logged), so the next rollout downloads only what changed.

The store decides nothing about generations: :meth:`EngineStore.install` and
:meth:`EngineStore.activate` make current what they are told. Whether a generation
should replace the current one is the caller's decision, taken while it holds the
lock (the workers' rollout, :mod:`recsys_workers.rollout`, with its one generation
rule).

:meth:`EngineStore.lock` is re-entrant within one thread of one ``EngineStore``, so
a worker may hold it while it downloads (into :attr:`EngineStore.blobs` or
:meth:`temp_path`) and then call :meth:`install` or :meth:`install_version`.
Everything else that writes takes the lock itself.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.archive import MAX_MANIFEST_BYTES, FileEntry, Limits, Manifest, VerifiedArchive, peek_manifest, verify
from recsys.blobs import BlobStore
from recsys.errors import InvalidArchive, LockTimeout, StoreError
from recsys.fsutil import fsync_dir, temp_name, write_atomic
from recsys.locks import FileLock
from recsys.manifest import MANIFEST_NAME, parse_manifest, valid_version
from recsys.safezip import open_zip

__all__ = ["EngineStore", "Installed", "Ingested"]

logger = logging.getLogger(__name__)

BLOBS = "blobs"
CURRENT = "CURRENT"
HISTORY = "history"
LOCK = ".lock"
VERSIONS = "versions"
#: Activations remembered in ``history``.
HISTORY_LIMIT = 100
#: Temporary files the store itself writes in ``root`` (only under the lock).
_OWN_TEMPS = (".tmp-current-", ".tmp-history-")
#: Errors of ``os.link`` that mean "this file system cannot hard-link here".
_NO_LINKS = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)

_StatKey = tuple[int, int, int]


@dataclass(frozen=True)
class Installed:
    """The store's current engine. ``sha256``: of the archive it came from, when known;
    ``manifest_sha256``: of its manifest's bytes (the version's identity)."""

    version: str
    generation: int
    path: Path
    manifest: Manifest
    sha256: str | None = None
    manifest_sha256: str | None = None


@dataclass(frozen=True)
class Ingested:
    """What putting an archive's files into the blobs took: files and bytes that were new,
    and those the blobs held already."""

    files_added: int = 0
    bytes_added: int = 0
    files_reused: int = 0
    bytes_reused: int = 0


class EngineStore:
    """One machine's engines on disk (see the module docstring).

    ``keep``: versions kept on disk (the current one included, at least 1);
    ``limits`` and ``engines``: what :func:`recsys.archive.verify` (and
    :meth:`accept_manifest`) accept.
    """

    def __init__(
        self,
        root: Path,
        *,
        keep: int = 2,
        limits: Limits = Limits(),
        engines: Collection[str] | None = None,
    ) -> None:
        """Open (and create) the store; clean leftovers of crashed installs and adopt the
        files of a first-wave store into the blobs (when no other process holds the lock)."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (the current version), got {keep}")
        self.root = Path(root)
        self.keep = keep
        self.limits = limits
        self.engines = engines
        self._versions = self.root / VERSIONS
        self._current_file = self.root / CURRENT
        self._history_file = self.root / HISTORY
        self._lock = FileLock(
            self.root / LOCK,
            name="the engine store lock",
            busy="another process of this machine is installing an engine; retry when it is done, "
            "or stop that process if it is stuck",
        )
        self._cached: tuple[_StatKey | None, Installed | None] | None = None
        try:
            self._versions.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the engine store at {str(self.root)!r}: {exc}") from exc
        self.blobs = BlobStore(self.root / BLOBS)
        try:
            with self.lock(timeout=0), self._writing():
                self._clean(everything=True)
                self._adopt()
        except LockTimeout:
            logger.info("engine store %s is busy (another process installs); its leftovers are cleaned later", root)

    # -- reading -------------------------------------------------------------------

    def current(self) -> Installed | None:
        """The current engine, or None before the first install. Cheap (a stat and,
        when CURRENT changed, a small read): engine tasks call it every time.

        Raises StoreError when CURRENT is unreadable or names a missing version.
        """
        try:
            info = os.stat(self._current_file)
        except FileNotFoundError:
            key: _StatKey | None = None
        else:
            key = (info.st_mtime_ns, info.st_ino, info.st_size)
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        installed = None if key is None else self._read_current()
        self._cached = (key, installed)
        return installed

    @property
    def generation(self) -> int:
        """The current generation, 0 when there is none."""
        current = self.current()
        return current.generation if current is not None else 0

    def has(self, version: str) -> bool:
        """Whether ``version`` is on this disk (assembled)."""
        return valid_version(version) and (self._versions / version / MANIFEST_NAME).is_file()

    def versions(self) -> list[str]:
        """Versions on disk, oldest first."""
        return sorted(p.name for p in self._versions.iterdir() if self.has(p.name))

    def holds(self, entry: FileEntry) -> bool:
        """Whether the blob of ``entry`` is here, with the size its manifest says."""
        return self.blobs.size(entry.sha256) == entry.size

    def missing(self, manifest: Manifest) -> list[FileEntry]:
        """The files of ``manifest`` whose blobs are not here, each blob once (two paths
        with the same bytes are one download), in the manifest's order."""
        seen: set[str] = set()
        missing = []
        for entry in manifest.files:
            if entry.sha256 not in seen and not self.holds(entry):
                missing.append(entry)
            seen.add(entry.sha256)
        return missing

    def accept_manifest(self, raw: bytes, where: str = MANIFEST_NAME) -> Manifest:
        """Parse the manifest bytes of a version to be installed and check what
        :func:`recsys.archive.verify` checks of an archive before reading its files:
        the manifest's fields and paths, its engine (installed here, when the store was
        given ``engines``) and the limits (files, bytes). Raises InvalidArchive."""
        if len(raw) > MAX_MANIFEST_BYTES:
            raise InvalidArchive(f"{where} is {len(raw)} bytes, over the limit of {MAX_MANIFEST_BYTES}")
        manifest = parse_manifest(raw, where)
        if self.engines is not None and manifest.engine not in self.engines:
            installed = ", ".join(sorted(self.engines)) or "none"
            raise InvalidArchive(
                f"version {manifest.version} is of engine {manifest.engine!r}, which is not installed here "
                f"(installed: {installed}); install its plugin, e.g. "
                f"'pip install -e plugins/recsys-engine-{manifest.engine}'"
            )
        limits = self.limits
        if len(manifest.files) + 1 > limits.max_entries:
            raise InvalidArchive(
                f"version {manifest.version} lists {len(manifest.files)} files, over the limit of "
                f"{limits.max_entries} (RECSYS_ARCHIVE_MAX_ENTRIES)"
            )
        for entry in manifest.files:
            if entry.size > limits.max_file_bytes:
                raise InvalidArchive(
                    f"file {entry.path!r} of version {manifest.version} is {entry.size} bytes, over the limit of "
                    f"{limits.max_file_bytes} (RECSYS_ARCHIVE_MAX_FILE_BYTES)"
                )
        if manifest.total_size > limits.max_bytes:
            raise InvalidArchive(
                f"version {manifest.version} is {manifest.total_size} bytes, over the limit of "
                f"{limits.max_bytes} (RECSYS_ARCHIVE_MAX_BYTES)"
            )
        return manifest

    def temp_path(self, name: str = "download") -> Path:
        """A fresh path ``root/.tmp-<name>-<random>`` for a download on the store's disk.

        Use it while holding :meth:`lock` (leftovers are removed at the next open,
        when no process holds the lock) and remove it when done.
        """
        return temp_name(self.root, name)

    # -- writing -------------------------------------------------------------------

    @contextmanager
    def lock(self, timeout: float = 600.0) -> Iterator[None]:
        """Hold the machine-wide lock (:class:`recsys.locks.FileLock`); raise LockTimeout
        after ``timeout`` seconds. Re-entrant within the thread that holds it; other
        threads and processes wait."""
        with self._lock.hold(timeout):
            yield

    def install(
        self, archive: Path, *, generation: int, sha256: str | None = None, lock_timeout: float = 600.0
    ) -> Installed:
        """Make the engine in ``archive`` current with ``generation``.

        Under the lock: if the version is already on disk it is only switched to;
        otherwise the archive is verified (a thin one is accepted when every file it
        leaves out is a blob here; MissingFiles names those that are not), its files go
        into the blobs (checked again), and the version is assembled. ``sha256``, when
        given, must match the archive file (InvalidArchive otherwise). A failure leaves
        the current engine untouched.
        """
        _check_generation(generation)
        archive = Path(archive)
        with self.lock(lock_timeout), self._writing():
            self._clean(everything=False)
            current = self._current_for_update()
            version = peek_manifest(archive, self.limits).version
            if self.has(version):
                logger.info("engine version %s is already on disk; switching to it", version)
                return self._activate_locked(version, generation, sha256 or self._known_sha256(version), current)
            self._adopt()
            verified = verify(archive, self.limits, engines=self.engines, have=self.holds)
            if sha256 is not None and sha256.lower() != verified.sha256:
                raise InvalidArchive(
                    f"archive {str(archive)!r} sha256 mismatch: expected {sha256}, "
                    f"file is {verified.sha256} (a corrupt or partial download?)"
                )
            started = time.monotonic()
            ingested = self._ingest(archive, verified.manifest, verified.members, verified.manifest_bytes)
            manifest_sha256 = self._add_manifest(verified.manifest_bytes)
            self._assemble(manifest_sha256, verified.manifest)
            logger.info(
                "engine store %s: version %s from %s: %d files (%.1f MB) added to the blobs, %d (%.1f MB) "
                "already there, in %.1f s",
                self.root, verified.manifest.version, archive.name, ingested.files_added, ingested.bytes_added / 1e6,
                ingested.files_reused, ingested.bytes_reused / 1e6, time.monotonic() - started,
            )
            return self._activate_locked(verified.manifest.version, generation, verified.sha256, current)

    def stage(self, verified: VerifiedArchive, lock_timeout: float = 600.0) -> None:
        """Put the files and manifest of an archive :func:`~recsys.archive.verify` (or
        ``pack``) accepted into the blobs, without assembling or activating its version.

        A builder stages its build before uploading it: when the API's broadcast comes,
        this machine's processes find every file here and download nothing. Blobs no
        kept version references are still deleted at the next activation.
        """
        with self.lock(lock_timeout), self._writing():
            self._clean(everything=False)
            started = time.monotonic()
            ingested = self._ingest(verified.path, verified.manifest, verified.members, verified.manifest_bytes)
            self._add_manifest(verified.manifest_bytes)
            logger.info(
                "engine store %s: staged version %s: %d files (%.1f MB) added to the blobs, %d already there, "
                "in %.1f s", self.root, verified.manifest.version, ingested.files_added, ingested.bytes_added / 1e6,
                ingested.files_reused, time.monotonic() - started,
            )

    def adopt(self) -> None:
        """Adopt the files of the versions on disk into the blobs (see the module
        docstring; done at open when the lock is free, and before each install)."""
        with self.lock(), self._writing():
            self._adopt()

    def add_manifest(self, raw: bytes) -> str:
        """Keep the manifest bytes ``raw`` as a blob (the caller holds the lock); returns its sha256."""
        with self.lock(), self._writing():
            return self._add_manifest(raw)

    def install_version(
        self, manifest_sha256: str, *, generation: int, sha256: str | None = None, lock_timeout: float = 600.0
    ) -> Installed:
        """Make the version whose manifest is blob ``manifest_sha256`` current with
        ``generation``, assembling it from the blobs unless it is on disk already.

        Every file the manifest lists must be a blob here (the caller downloaded them;
        StoreError names the first missing ones otherwise); the current engine is
        untouched by a failure. ``sha256``: the version's archive sha256, when known.
        """
        _check_generation(generation)
        with self.lock(lock_timeout), self._writing():
            self._clean(everything=False)
            current = self._current_for_update()
            try:
                with self.blobs.open(manifest_sha256) as fp:
                    raw = fp.read(MAX_MANIFEST_BYTES + 1)
            except FileNotFoundError:
                raise StoreError(
                    f"engine store {str(self.root)!r} has no manifest blob {manifest_sha256}: add it first"
                ) from None
            manifest = self.accept_manifest(raw, f"manifest {manifest_sha256[:12]}...")
            if not self.has(manifest.version):
                self._assemble(manifest_sha256, manifest)
            return self._activate_locked(manifest.version, generation, sha256 or self._known_sha256(manifest.version),
                                         current)

    def activate(self, version: str, *, generation: int, lock_timeout: float = 600.0) -> Installed:
        """Make a version already on disk current with ``generation`` (a rollback);
        StoreError when the version is not on disk."""
        _check_generation(generation)
        with self.lock(lock_timeout), self._writing():
            current = self._current_for_update()
            if not self.has(version):
                on_disk = ", ".join(self.versions()) or "none"
                raise StoreError(
                    f"engine version {version!r} is not on this machine's disk (on disk: {on_disk}); "
                    "install its archive instead"
                )
            return self._activate_locked(version, generation, self._known_sha256(version), current)

    # -- internals -----------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn OS errors of a write into StoreError naming the store."""
        try:
            yield
        except OSError as exc:
            raise StoreError(f"cannot update the engine store at {str(self.root)!r}: {exc}") from exc

    def _clean(self, *, everything: bool) -> None:
        """Remove leftovers of crashed installs (the lock is held). ``everything``:
        also ``root/.tmp-*`` downloads (only at open; an install may be called by a
        holder of the lock that downloads into one). Partial blob downloads stay: the
        next attempt resumes them."""
        for path in self._versions.iterdir():
            if path.name.startswith(".tmp-"):
                self._remove(path, "leftover of an interrupted install")
            elif path.is_dir() and valid_version(path.name) and not (path / MANIFEST_NAME).is_file():
                self._remove(path, "half-written version without a manifest")
        for path in self.root.iterdir():
            if path.name.startswith(_OWN_TEMPS) or (everything and path.name.startswith(".tmp-")):
                self._remove(path, "leftover of an interrupted write")
        self.blobs.clean()

    def _remove(self, path: Path, why: str) -> None:
        logger.warning("engine store: removing %s (%s)", path, why)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def _ingest(
        self, archive: Path, manifest: Manifest, members: Collection[str], manifest_bytes: bytes
    ) -> Ingested:
        """Put the files ``archive`` carries into the blobs (each checked again while
        copied); files whose blob is here already are not read."""
        added = added_bytes = reused = reused_bytes = 0
        with open_zip(archive, self.limits) as opened:
            for entry in manifest.files:
                if self.holds(entry):
                    reused, reused_bytes = reused + 1, reused_bytes + entry.size
                elif entry.path in members:
                    self.blobs.add_chunks(entry.sha256, entry.size, opened.read(entry.path))
                    added, added_bytes = added + 1, added_bytes + entry.size
        return Ingested(added, added_bytes, reused, reused_bytes)

    def _add_manifest(self, raw: bytes) -> str:
        sha256 = hashlib.sha256(raw).hexdigest()
        if not self.blobs.has(sha256):
            self.blobs.add_chunks(sha256, len(raw), [raw])
        return sha256

    def _assemble(self, manifest_sha256: str, manifest: Manifest) -> None:
        """Build ``versions/<version>`` from the blobs: hard links in a temporary folder,
        renamed into place once every file is there (StoreError when one is missing)."""
        missing = [entry for entry in manifest.files if not self.holds(entry)]
        if missing or not self.blobs.has(manifest_sha256):
            named = ", ".join(f"{e.path!r} (sha256 {e.sha256[:12]}..., {e.size} bytes)" for e in missing[:3])
            raise StoreError(
                f"cannot assemble engine version {manifest.version}: {len(missing)} of its {len(manifest.files)} "
                f"files are not on this machine{': ' + named if named else ' (nor its manifest)'}; "
                "download them first"
            )
        dest = self._versions / manifest.version
        tmp = temp_name(self._versions, "assemble")
        tmp.mkdir()
        try:
            for entry in manifest.files:
                self.blobs.link(entry.sha256, tmp.joinpath(*entry.path.split("/")))
            self.blobs.link(manifest_sha256, tmp / MANIFEST_NAME)
            for folder in sorted({p.parent for p in tmp.rglob("*")}, key=lambda p: len(p.parts), reverse=True):
                fsync_dir(folder)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self._versions)

    def _adopt(self) -> None:
        """Make every file of the versions on disk the same inode as its blob (the lock
        is held): files of a first-wave store, whose blobs do not exist yet, are hashed
        into the blobs; a copy of a blob that exists is replaced by a link to it. Cheap
        when there is nothing to do (a stat per file)."""
        for version in self.versions():
            folder = self._versions / version
            try:
                raw, manifest = _read_version(folder)
            except InvalidArchive as exc:
                logger.warning("engine store %s: cannot adopt version %s into the blobs: %s", self.root, version, exc)
                continue
            entries = [*manifest.files, FileEntry(MANIFEST_NAME, len(raw), hashlib.sha256(raw).hexdigest())]
            started, adopted, adopted_bytes = time.monotonic(), 0, 0
            for entry in entries:
                path = folder.joinpath(*entry.path.split("/"))
                try:
                    if self._adopt_file(path, entry):
                        adopted, adopted_bytes = adopted + 1, adopted_bytes + entry.size
                except InvalidArchive as exc:
                    logger.warning("engine store %s: version %s: %s; left as it is (not reused by later versions)",
                                   self.root, version, exc)
                except OSError as exc:
                    logger.warning("engine store %s: version %s: cannot adopt %r into the blobs: %s",
                                   self.root, version, entry.path, exc)
            if adopted:
                logger.info("engine store %s: adopted %d files (%.1f MB) of version %s into the blobs in %.1f s",
                            self.root, adopted, adopted_bytes / 1e6, version, time.monotonic() - started)

    def _adopt_file(self, path: Path, entry: FileEntry) -> bool:
        """Adopt one file; whether anything changed."""
        if _same_file(path, self.blobs.path(entry.sha256)):
            return False
        if not self.blobs.has(entry.sha256):
            self.blobs.add_file(path, entry.sha256, entry.size)  # checks the bytes; links when it can
            return True
        if self.blobs.size(entry.sha256) != entry.size:
            return False
        tmp = temp_name(self.blobs.root, "adopt")  # removed by BlobStore.clean after a crash
        try:
            os.link(self.blobs.path(entry.sha256), tmp)
        except OSError as exc:
            if exc.errno in _NO_LINKS:
                return False  # this file system copies: nothing to gain
            raise
        try:
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _referenced(self) -> set[str]:
        """The blobs the versions on disk use: their files and their manifests."""
        referenced: set[str] = set()
        for version in self.versions():
            try:
                raw, manifest = _read_version(self._versions / version)
            except InvalidArchive as exc:  # keep everything rather than guess
                raise StoreError(f"cannot tell which blobs version {version} uses: {exc}") from exc
            referenced.add(hashlib.sha256(raw).hexdigest())
            referenced.update(entry.sha256 for entry in manifest.files)
        return referenced

    def _read_current(self) -> Installed | None:
        try:
            raw = self._current_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {str(self._current_file)!r}: {exc}") from exc
        try:
            data = json.loads(raw)
            version, generation, sha256 = data["version"], data["generation"], data.get("sha256")
            if not isinstance(version, str) or not valid_version(version):
                raise ValueError(f"bad version {version!r}")
            if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
                raise ValueError(f"bad generation {generation!r}")
            if sha256 is not None and not isinstance(sha256, str):
                raise ValueError(f"bad sha256 {sha256!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"{str(self._current_file)!r} is unreadable ({exc}); install an engine again to replace it"
            ) from exc
        path = self._versions / version
        try:
            manifest_bytes, manifest = _read_version(path)
        except InvalidArchive as exc:
            raise StoreError(
                f"{str(self._current_file)!r} names version {version}, which is not usable on disk ({exc}); "
                "install an engine again"
            ) from exc
        return Installed(version, generation, path, manifest, sha256, hashlib.sha256(manifest_bytes).hexdigest())

    def _current_for_update(self) -> Installed | None:
        """The current engine for a writer: a broken CURRENT counts as none (it is
        about to be replaced)."""
        try:
            return self._read_current()
        except StoreError as exc:
            logger.warning("%s; the new install replaces it", exc)
            return None

    def _activate_locked(
        self, version: str, generation: int, sha256: str | None, previous: Installed | None
    ) -> Installed:
        path = self._versions / version
        manifest_bytes, manifest = _read_version(path)
        manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        record = {"version": version, "generation": generation, "sha256": sha256,
                  "manifest_sha256": manifest_sha256, "installed_at": now}
        write_atomic(self._current_file, _json(record))
        history = self._read_history()
        history.append(record)
        write_atomic(self._history_file, _json(history[-HISTORY_LIMIT:]))
        self._cached = None
        logger.info(
            "engine store %s: version %s (engine %s) is current at generation %d",
            self.root, version, manifest.engine, generation,
        )
        self._prune([version] + ([previous.version] if previous is not None else []), history)
        try:
            self.blobs.collect(self._referenced())
        except (StoreError, OSError) as exc:  # the new version is current already: not a failure
            logger.warning("engine store %s: unreferenced blobs are not deleted this time: %s", self.root, exc)
        return Installed(version, generation, path, manifest, sha256, manifest_sha256)

    def _read_history(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self._history_file.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            logger.warning("engine store history %s is unreadable (%s); starting a new one", self._history_file, exc)
            return []
        if not isinstance(data, list):
            return []
        return [r for r in data if isinstance(r, dict) and isinstance(r.get("version"), str)]

    def _known_sha256(self, version: str) -> str | None:
        for record in reversed(self._read_history()):
            if record["version"] == version and isinstance(record.get("sha256"), str):
                return str(record["sha256"])
        return None

    def _prune(self, first: list[str], history: list[dict[str, Any]]) -> None:
        """Keep ``keep`` versions: ``first`` (the current one, then the one it replaced),
        then the most recently activated; versions never activated count as the oldest."""
        on_disk = set(self.versions())
        recent: list[str] = list(dict.fromkeys(first))
        for record in reversed(history):
            version = record["version"]
            if version in on_disk and version not in recent:
                recent.append(version)
        recent += sorted(on_disk - set(recent), reverse=True)
        for version in recent[self.keep :]:
            doomed = temp_name(self._versions, "prune")
            try:
                os.rename(self._versions / version, doomed)
            except OSError as exc:
                logger.warning("engine store: could not prune version %s: %s", version, exc)
                continue
            shutil.rmtree(doomed, ignore_errors=True)
            logger.info("engine store %s: pruned version %s", self.root, version)


def _read_version(folder: Path) -> tuple[bytes, Manifest]:
    """The exact manifest bytes of an engine folder, and the manifest (InvalidArchive)."""
    path = folder / MANIFEST_NAME
    try:
        with open(path, "rb") as fp:
            raw = fp.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise InvalidArchive(f"{str(folder)!r} has no {MANIFEST_NAME}: it is not an unpacked engine") from None
    except OSError as exc:
        raise InvalidArchive(f"cannot read {str(path)!r}: {exc}") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidArchive(f"{str(path)!r} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        return raw, parse_manifest(raw, str(path))
    except InvalidArchive as exc:
        raise InvalidArchive(f"{str(path)!r}: {exc}") from exc


def _same_file(a: Path, b: Path) -> bool:
    with suppress(OSError):
        first, second = os.stat(a), os.stat(b)
        return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)
    return False


def _check_generation(generation: int) -> None:
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise ValueError(f"generation must be a whole number >= 0, got {generation!r}")


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=1) + "\n").encode("utf-8")
