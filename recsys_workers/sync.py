"""Following the API's engine: one download per machine, checked, installed atomically.

A :class:`Target` is what the API announces: a generation, a version and the
archive's sha256, from an ``engine_updated`` broadcast or from ``GET /v1/engine``.
:meth:`EngineSync.follow` applies the generation rule (a target whose generation is
not above the machine's is ignored; a rollback is just a higher generation that
names an older version) and otherwise, holding the machine's lock:

1. looks again (another process of this machine may have installed it meanwhile);
2. switches to the version if it is already on disk (a rollback: no download);
3. else downloads ``GET /v1/engine/archive`` into the store's folder, checks
   its size (``Content-Length``; the target's size when known) and sha256 against
   the target, or against the API's headers when the API already serves a newer
   generation than the target, and installs it with ``EngineStore.install``;
4. deletes the download whatever happens.

A failed check raises InvalidArchive and leaves the current engine in service.
The machine's lock is the engine store's (``EngineStore.lock``: a ``flock`` that
serialises every process and thread of the machine, released by the kernel when its
holder dies, re-entrant so ``install`` can run under it). The download goes to the
store's disk (``EngineStore.temp_path``); a file left there by a killed download
is removed when the store is next opened.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from recsys.errors import InvalidArchive, InvalidTarget, NoEngine
from recsys.store import EngineStore, Installed
from recsys_workers.api_client import ApiClient

__all__ = ["EngineSync", "Followed", "Target"]

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: Seconds a process waits for another one of its machine to finish a download.
DOWNLOAD_LOCK_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Target:
    """An engine the API made current: ``generation`` names the change, ``version``
    the archive; ``sha256`` and ``size`` (when known) check the download."""

    generation: int
    version: str
    sha256: str | None = None
    size: int | None = None
    created_at: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.generation, bool) or not isinstance(self.generation, int) or self.generation < 1:
            raise InvalidTarget(f"generation must be a whole number >= 1, got {self.generation!r}")
        if not isinstance(self.version, str) or not _VERSION.match(self.version):
            raise InvalidTarget(f"version must be a build id like 20261128T211800123456Z, got {self.version!r}")
        if self.sha256 is not None and (not isinstance(self.sha256, str) or not _SHA256.match(self.sha256)):
            raise InvalidTarget(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0):
            raise InvalidTarget(f"size must be a whole number of bytes, got {self.size!r}")

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Target:
        """From the JSON of ``GET /v1/engine`` (manifest + generation, sha256, size)."""
        try:
            return cls(
                generation=data["generation"],
                version=data["version"],
                sha256=data.get("sha256"),
                size=data.get("size"),
                created_at=data.get("created_at"),
            )
        except KeyError as exc:
            raise InvalidTarget(f"the API's GET /v1/engine answer has no {exc.args[0]!r}") from None

    def describe(self) -> str:
        return f"generation {self.generation} (version {self.version})"


class Followed(Enum):
    """What :meth:`EngineSync.follow` did."""

    IGNORED = "ignored"  # the machine already had this generation or a newer one
    ALREADY = "already"  # another process of this machine installed it while we waited
    ACTIVATED = "activated"  # the version was on disk: switched to it (e.g. a rollback)
    INSTALLED = "installed"  # downloaded, checked and installed


class EngineSync:
    """Brings one machine's :class:`~recsys.store.EngineStore` to the API's engine."""

    def __init__(self, store: EngineStore, api: ApiClient, *, max_bytes: int) -> None:
        self.store = store
        self.api = api
        self.max_bytes = max_bytes

    def follow(self, target: Target) -> tuple[Followed, Installed | None]:
        """Make ``target`` this machine's engine unless it has that generation or a newer one."""
        if target.generation <= self.store.generation:
            return Followed.IGNORED, self.store.current()
        with self.store.lock(DOWNLOAD_LOCK_TIMEOUT):
            if target.generation <= self.store.generation:
                return Followed.ALREADY, self.store.current()
            if self.store.has(target.version):
                installed = self.store.activate(target.version, generation=target.generation)
                return Followed.ACTIVATED, installed
            return Followed.INSTALLED, self._download_and_install(target)

    def pull_current(self, *, at_least: int | None = None) -> tuple[Followed, Installed | None]:
        """Follow the API's current engine (``GET /v1/engine``). Raises NoEngine when
        the API has none, or none of generation ``at_least`` or newer."""
        data = self.api.current()
        if data is None:
            raise NoEngine(
                "no engine has been built yet: build one (POST /v1/engine/builds, or `recsys build` and "
                "PUT /v1/engine/archive); this worker will then receive it"
            )
        target = Target.from_api(data)
        if at_least is not None and target.generation < at_least:
            raise NoEngine(
                f"the task needs engine generation {at_least} or newer, but the API serves generation "
                f"{target.generation}"
            )
        return self.follow(target)

    def install_built(self, archive: Path, *, generation: int, sha256: str) -> Installed:
        """Install an archive this machine built and uploaded (no download needed)."""
        with self.store.lock(DOWNLOAD_LOCK_TIMEOUT):
            return self.store.install(archive, generation=generation, sha256=sha256)

    def _download_and_install(self, target: Target) -> Installed:
        started = time.monotonic()
        download = self.api.download(self.store.temp_path("download"), max_bytes=self.max_bytes)
        try:
            generation, expected_sha = self._expected(target, download.generation, download.announced_sha256)
            if target.size is not None and generation == target.generation and download.size != target.size:
                raise InvalidArchive(
                    f"the downloaded archive of {target.describe()} has {download.size} bytes, "
                    f"but the API announced {target.size}"
                )
            if expected_sha is not None and download.sha256 != expected_sha:
                raise InvalidArchive(
                    f"the downloaded archive of generation {generation} has sha256 {download.sha256}, "
                    f"but {expected_sha} was announced"
                )
            installed = self.store.install(download.path, generation=generation, sha256=download.sha256)
        finally:
            download.path.unlink(missing_ok=True)
        seconds = time.monotonic() - started
        logger.info(
            "downloaded and installed generation %d (version %s): %.1f MB in %.1f s",
            installed.generation, installed.version, download.size / 1e6, seconds,
        )
        return installed

    @staticmethod
    def _expected(target: Target, served: int | None, served_sha: str | None) -> tuple[int, str | None]:
        """The generation the download installs as, and the sha256 it must have.

        The API serves its current archive, which may already be newer than the target
        (two uploads in a row): then the API's own headers describe it.
        """
        if served is None or served == target.generation:
            return target.generation, target.sha256 or served_sha
        if served > target.generation:
            if served_sha is None:
                raise InvalidArchive(
                    f"the API serves generation {served} (newer than the announced {target.generation}) "
                    "without its sha256 header: the download cannot be checked"
                )
            return served, served_sha
        raise InvalidArchive(
            f"the API serves generation {served}, older than the announced {target.generation}: "
            "the API's state went back (restored?); not installing"
        )
