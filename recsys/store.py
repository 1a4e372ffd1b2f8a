"""The engine store: one machine's engines on disk.

Layout under ``root`` (``<RECSYS_DATA_DIR>/engines``)::

    versions/<version>/        an unpacked engine (manifest.json + its files)
    CURRENT                    JSON {"version", "generation", "sha256", "installed_at"},
                               replaced atomically (write temp + fsync + os.replace)
    history                    JSON list of activations, oldest first (for pruning and
                               to remember each version's archive sha256)
    .lock                      machine-wide file lock (recsys.locks, flock) for installs
    .tmp-*                     leftovers of a crashed install, removed at start

Several processes of one machine share a store: one installs a version (holding the
lock) while the others wait for the lock and then find it installed. The current
version and the ones before it are kept (``keep`` in all, counted by most recent
activation, so a rollback needs no download); older versions are pruned.
``generation`` is the API's number of the change that made this version current
(0: unknown, e.g. a local install).

The store decides nothing about generations: :meth:`EngineStore.install` and
:meth:`EngineStore.activate` make current what they are told. Whether a generation
should replace the current one is the caller's decision, taken while it holds the
lock (the workers' rollout, :mod:`recsys_workers.rollout`, with its one generation
rule).

:meth:`EngineStore.lock` is re-entrant within one thread of one ``EngineStore``, so
a worker may hold it while it downloads an archive (into :meth:`temp_path`) and then
call :meth:`install`. Everything else that writes takes the lock itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.archive import Limits, Manifest, extract, peek_manifest, read_manifest, verify
from recsys.errors import InvalidArchive, LockTimeout, StoreError
from recsys.fsutil import temp_name, write_atomic
from recsys.locks import FileLock
from recsys.manifest import MANIFEST_NAME, valid_version

__all__ = ["EngineStore", "Installed"]

logger = logging.getLogger(__name__)

CURRENT = "CURRENT"
HISTORY = "history"
LOCK = ".lock"
VERSIONS = "versions"
#: Activations remembered in ``history``.
HISTORY_LIMIT = 100
#: Temporary files the store itself writes in ``root`` (only under the lock).
_OWN_TEMPS = (".tmp-current-", ".tmp-history-")

_StatKey = tuple[int, int, int]


@dataclass(frozen=True)
class Installed:
    """The store's current engine."""

    version: str
    generation: int
    path: Path
    manifest: Manifest
    sha256: str | None = None


class EngineStore:
    """One machine's engines on disk (see the module docstring).

    ``keep``: versions kept on disk (the current one included, at least 1);
    ``limits`` and ``engines``: what :func:`recsys.archive.verify` accepts.
    """

    def __init__(
        self,
        root: Path,
        *,
        keep: int = 2,
        limits: Limits = Limits(),
        engines: Collection[str] | None = None,
    ) -> None:
        """Open (and create) the store; clean leftovers of crashed installs."""
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
        try:
            with self.lock(timeout=0), self._writing():
                self._clean(everything=True)
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
        """Whether ``version`` is unpacked on this disk."""
        return valid_version(version) and (self._versions / version / MANIFEST_NAME).is_file()

    def versions(self) -> list[str]:
        """Versions on disk, oldest first."""
        return sorted(p.name for p in self._versions.iterdir() if self.has(p.name))

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
        otherwise the archive is verified and unpacked (atomically) first. ``sha256``,
        when given, must match the archive file (InvalidArchive otherwise). A failure
        leaves the current engine untouched.
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
            verified = verify(archive, self.limits, engines=self.engines)
            if sha256 is not None and sha256.lower() != verified.sha256:
                raise InvalidArchive(
                    f"archive {str(archive)!r} sha256 mismatch: expected {sha256}, "
                    f"file is {verified.sha256} (a corrupt or partial download?)"
                )
            version = verified.manifest.version
            extract(verified, self._versions / version, self.limits)
            return self._activate_locked(version, generation, verified.sha256, current)

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
        holder of the lock that downloads into one)."""
        for path in self._versions.iterdir():
            if path.name.startswith(".tmp-"):
                self._remove(path, "leftover of an interrupted install")
            elif path.is_dir() and valid_version(path.name) and not (path / MANIFEST_NAME).is_file():
                self._remove(path, "half-written version without a manifest")
        for path in self.root.iterdir():
            if path.name.startswith(_OWN_TEMPS) or (everything and path.name.startswith(".tmp-")):
                self._remove(path, "leftover of an interrupted write")

    def _remove(self, path: Path, why: str) -> None:
        logger.warning("engine store: removing %s (%s)", path, why)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

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
            manifest = read_manifest(path)
        except InvalidArchive as exc:
            raise StoreError(
                f"{str(self._current_file)!r} names version {version}, which is not usable on disk ({exc}); "
                "install an engine again"
            ) from exc
        return Installed(version, generation, path, manifest, sha256)

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
        manifest = read_manifest(path)
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        record = {"version": version, "generation": generation, "sha256": sha256, "installed_at": now}
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
        return Installed(version, generation, path, manifest, sha256)

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


def _check_generation(generation: int) -> None:
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise ValueError(f"generation must be a whole number >= 0, got {generation!r}")


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=1) + "\n").encode("utf-8")
