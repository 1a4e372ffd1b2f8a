"""Rollout: decide, fetch once per machine, verify, swap in.

Everything a worker does to follow the API's engine is here, called from three places:

=============================  ==================================================
the ``engine_updated`` actor   :meth:`Rollout.follow` a broadcast, then
                               :meth:`Rollout.refresh`
the catch-up thread            :meth:`Rollout.catch_up` (ask ``GET /v1/engine``)
``EngineMiddleware``           :meth:`Rollout.prepare` the engine of a task
=============================  ==================================================

(and ``build_index``, whose machine installs what it uploaded:
:meth:`Rollout.install_built`).

**Decide.** A :class:`Target` is what the API announces: a generation, a version and the
archive's sha256, from an ``engine_updated`` broadcast or from ``GET /v1/engine``.
:meth:`Rollout.follow` applies the generation rule (a target whose generation is
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

The generation rule is :func:`is_newer`, coded once; the engine store only does
what it is told.

**Swap in.** :meth:`Rollout.refresh` loads the machine's current engine into this
process (:class:`recsys.cache.EngineCache`: the old engine serves until the new one
is loaded) and, when the process now serves another engine, calls ``on_swap`` (the
worker reports it in its heartbeat at once).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from recsys.cache import EngineCache, Loaded
from recsys.errors import InvalidArchive, InvalidTarget, NoEngine, RecsysError, StoreError
from recsys.store import EngineStore, Installed
from recsys_workers.api_client import ApiClient

__all__ = ["DOWNLOAD_LOCK_TIMEOUT", "Followed", "Rollout", "Target", "is_newer"]

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: Seconds a process waits for another one of its machine to finish a download.
DOWNLOAD_LOCK_TIMEOUT = 1800.0


def is_newer(generation: int, than: int) -> bool:
    """The generation rule: whether ``generation`` is newer than ``than`` (the one a
    machine or a process has). Every rollout decision asks this, nothing else."""
    return generation > than


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
    """What :meth:`Rollout.follow` did."""

    IGNORED = "ignored"  # the machine already had this generation or a newer one
    ALREADY = "already"  # another process of this machine installed it while we waited
    ACTIVATED = "activated"  # the version was on disk: switched to it (e.g. a rollback)
    INSTALLED = "installed"  # downloaded, checked and installed


class Rollout:
    """Brings one machine's :class:`~recsys.store.EngineStore` to the API's engine, and
    one process's :class:`~recsys.cache.EngineCache` to the machine's.

    ``max_bytes``: the largest archive downloaded; ``on_swap``: called when this
    process starts serving another engine; ``on_behind``: called when a task saw that
    the API is ahead of this machine (the worker wakes its catch-up thread).
    """

    def __init__(
        self,
        store: EngineStore,
        api: ApiClient,
        cache: EngineCache,
        *,
        max_bytes: int,
        on_swap: Callable[[], None] = lambda: None,
        on_behind: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.api = api
        self.cache = cache
        self.max_bytes = max_bytes
        self.on_swap = on_swap
        self.on_behind = on_behind

    # -- this machine: decide, fetch once, verify, install --------------------------

    def follow(self, target: Target) -> tuple[Followed, Installed | None]:
        """Make ``target`` this machine's engine unless it has that generation or a newer one."""
        if not is_newer(target.generation, self.store.generation):
            return Followed.IGNORED, self.store.current()
        with self.store.lock(DOWNLOAD_LOCK_TIMEOUT):
            if not is_newer(target.generation, self.store.generation):
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
        if at_least is not None and is_newer(at_least, target.generation):
            raise NoEngine(
                f"the task needs engine generation {at_least} or newer, but the API serves generation "
                f"{target.generation}"
            )
        return self.follow(target)

    def install_built(self, archive: Path, *, generation: int, sha256: str) -> Installed:
        """Install an archive this machine built and uploaded (no download needed),
        unless the machine already has that generation or a newer one."""
        with self.store.lock(DOWNLOAD_LOCK_TIMEOUT):
            try:
                current = self.store.current()
            except StoreError as exc:  # a broken CURRENT: the install replaces it
                logger.warning("%s; installing the built engine over it", exc)
                current = None
            if current is not None and not is_newer(generation, current.generation):
                logger.info("this machine is already at generation %d (version %s); not installing the built "
                            "generation %d", current.generation, current.version, generation)
                return current
            return self.store.install(archive, generation=generation, sha256=sha256)

    # -- this process: swap in, catch up, prepare a task's engine ------------------

    def refresh(self) -> Loaded | None:
        """Load the machine's current engine into this process if it changed, and report it."""
        before = self.cache.loaded
        loaded = self.cache.get()
        if loaded is not None and (before is None or (before.version, before.generation) != (
            loaded.version, loaded.generation
        )):
            logger.info("serving engine %s version %s (generation %d)",
                        loaded.manifest.engine, loaded.version, loaded.generation)
            self.on_swap()
        return loaded

    def catch_up(self) -> Followed | None:
        """Follow the API's current engine if it is newer than the machine's, then load the
        machine's engine into this process. Returns what following did (None: the API
        has no engine yet). Raises RecsysError when the API cannot be asked or the
        download fails; the engine in service stays."""
        followed = None
        problem: RecsysError | None = None
        try:
            data = self.api.current()
            if data is not None:
                target = Target.from_api(data)
                followed, _ = self.follow(target)
                if followed is not Followed.IGNORED:
                    logger.info("catch-up: %s %s", followed.value, target.describe())
        except InvalidTarget as exc:
            problem = RecsysError(f"the API's answer to GET /v1/engine cannot be followed: {exc}")
        except RecsysError as exc:
            problem = exc
        # Whatever the API said, serve the newest engine this machine has.
        self.refresh()
        if problem is not None:
            raise problem
        return followed

    def prepare(self, *, strict: bool, at_least: int | None) -> Loaded:
        """The engine a task is served by (docs/architecture.md, Tasks).

        Not ``strict``: the newest engine on this machine's disk, loaded into this
        process if it changed; the API's current one is pulled first when the machine
        has none; when ``at_least`` (the API's generation, sent with the message) is
        newer than the machine's, ``on_behind`` is called and the task is served now.
        ``strict``: the engine must be at least ``at_least``, pulled first if not.
        Raises NoEngine, or what pulling or loading raised.
        """
        store = self.store
        if store.current() is None:
            self.pull_current(at_least=at_least if strict else None)
        elif at_least is not None and is_newer(at_least, store.generation):
            if strict:
                self.pull_current(at_least=at_least)
            else:
                self.on_behind()  # serve what we have; follow the API in the background
        loaded = self.refresh()
        if loaded is None:
            raise NoEngine("this worker has no engine installed and none could be pulled from the API")
        if strict and at_least is not None and is_newer(at_least, loaded.generation):
            raise NoEngine(
                f"this strict task needs engine generation {at_least} or newer, but this worker serves "
                f"generation {loaded.generation}; retry shortly (the rollout is in progress)"
            )
        return loaded

    # -- internals -------------------------------------------------------------------

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
