"""The engine store: one machine's engines on disk.

INTERFACE STUB — implementation pending (see the docstrings for the contract).

Layout under ``root`` (``<RECSYS_DATA_DIR>/engines``)::

    versions/<version>/        an unpacked engine (manifest.json + its files)
    CURRENT                    JSON {"version", "generation", "sha256", "installed_at"},
                               replaced atomically (write temp + os.replace)
    .lock                      machine-wide file lock (fcntl.flock) for installs
    .tmp-*                     leftovers of a crashed install, removed at start

Several processes of one machine share a store: one installs a version (holding the
lock) while the others wait for the lock and then find it installed. The current
version and the ones before it are kept (``keep`` in all, so a rollback needs no
download); older versions are pruned. ``generation`` is the API's number of the
change that made this version current (0: unknown, e.g. a local install).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from recsys.archive import Limits, Manifest

__all__ = ["EngineStore", "Installed"]


@dataclass(frozen=True)
class Installed:
    """The store's current engine."""

    version: str
    generation: int
    path: Path
    manifest: Manifest
    sha256: str | None = None


class EngineStore:
    def __init__(
        self,
        root: Path,
        *,
        keep: int = 2,
        limits: Limits = Limits(),
        engines: Collection[str] | None = None,
    ) -> None:
        """Open (and create) the store; clean leftovers of crashed installs."""
        raise NotImplementedError

    def current(self) -> Installed | None:
        """The current engine, or None before the first install. Cheap (a stat and,
        when CURRENT changed, a small read): engine tasks call it every time."""
        raise NotImplementedError

    @property
    def generation(self) -> int:
        """The current generation, 0 when there is none."""
        raise NotImplementedError

    def has(self, version: str) -> bool:
        raise NotImplementedError

    def versions(self) -> list[str]:
        """Versions on disk, oldest first."""
        raise NotImplementedError

    @contextmanager
    def lock(self, timeout: float = 600.0) -> Iterator[None]:
        """Hold the machine-wide lock; raise LockTimeout after ``timeout`` seconds."""
        raise NotImplementedError
        yield

    def install(
        self, archive: Path, *, generation: int, sha256: str | None = None, lock_timeout: float = 600.0
    ) -> Installed:
        """Make the engine in ``archive`` current with ``generation``.

        Under the lock: if the current generation is already >= ``generation``, nothing
        changes and the current engine is returned; if the version is already on disk it
        is only switched to; otherwise the archive is verified and unpacked (atomically)
        first. ``sha256``, when given, must match the archive file (InvalidArchive
        otherwise). A failure leaves the current engine untouched.
        """
        raise NotImplementedError

    def activate(self, version: str, *, generation: int, lock_timeout: float = 600.0) -> Installed:
        """Make a version already on disk current with ``generation`` (a rollback)."""
        raise NotImplementedError
