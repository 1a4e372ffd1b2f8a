"""Rollout: decide, fetch what is missing once per machine, verify, swap in.

Everything a worker does to follow the API's engine is here, called from three places:

=============================  ==================================================
the ``engine_updated`` actor   :meth:`Rollout.follow` a broadcast, then
                               :meth:`Rollout.refresh`
the catch-up thread            :meth:`Rollout.catch_up` (ask ``GET /v1/engine``)
``EngineMiddleware``           :meth:`Rollout.prepare` the engine of a task
=============================  ==================================================

(and ``build_index``, whose machine installs what it built:
:meth:`Rollout.install_built`).

**Decide.** A :class:`Target` is what the API announces: a generation, a version and
its ``manifest_sha256`` (the version's identity), from an ``engine_updated`` broadcast
or from ``GET /v1/engine``; a first-wave API announces the archive's ``sha256``
instead. :meth:`Rollout.follow` applies the generation rule (a target whose generation
is not above the machine's is ignored; a rollback is just a higher generation that
names an older version) and otherwise, holding the machine's lock:

1. looks again (another process of this machine may have installed it meanwhile);
2. switches to the version if it is already on disk (a rollback: no download);
3. else, when the target has a ``manifest_sha256``, fetches the manifest blob
   (``GET /v1/engine/files/{manifest_sha256}``, checked against its name, parsed and
   checked against the limits and the installed engines), and downloads each file
   whose blob the machine lacks (``GET /v1/engine/files/{sha256}``), resuming a
   download an earlier attempt left in ``blobs/.partial/`` with ``Range``; every blob
   is checked before it is stored; then the version is assembled from the blobs and
   made current (``EngineStore.install_version``);
4. else (a first-wave API: no ``manifest_sha256``, or a files endpoint answering 404
   without an error code or 405) downloads the full ``GET /v1/engine/archive`` into the
   store's folder, checks its size and sha256 against the target (or against the
   API's headers when the API already serves a newer generation), and installs it
   (``EngineStore.install``, which also fills the blobs); the download is deleted
   whatever happens.

A failed check raises InvalidArchive and leaves the current engine in service; so does
a full disk (StoreError) or a killed process: the blobs already complete stay, and so
does the partial one, so the next attempt downloads only the rest. The machine's lock
is the engine store's (``EngineStore.lock``: a ``flock`` that serialises every process
and thread of the machine, released by the kernel when its holder dies, re-entrant so
the store's installs run under it): concurrent rollouts on one machine download each
blob once.

**Progress.** The process that downloads reports into Redis
(:class:`recsys.cluster.Rollouts`, key ``recsys:rollout:<host>``) when it starts, at
most every :data:`PROGRESS_INTERVAL` seconds while bytes arrive, and when it ends
(``done``, or ``failed`` with the error): files and bytes needed, fetched, and reused
(already on the machine). The log says the same at the end (downloaded vs reused:
bytes, files, seconds).

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
from recsys.cluster import RolloutProgress, Rollouts
from recsys.errors import InvalidArchive, InvalidTarget, NoEngine, RecsysError, StoreError
from recsys.store import EngineStore, Installed
from recsys_workers.api_client import ApiClient, NotServed

__all__ = ["DOWNLOAD_LOCK_TIMEOUT", "PROGRESS_INTERVAL", "Followed", "Progress", "Rollout", "Target", "is_newer"]

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: Seconds a process waits for another one of its machine to finish a download.
DOWNLOAD_LOCK_TIMEOUT = 1800.0
#: Least seconds between two progress reports of a rollout while bytes arrive.
PROGRESS_INTERVAL = 0.5


def is_newer(generation: int, than: int) -> bool:
    """The generation rule: whether ``generation`` is newer than ``than`` (the one a
    machine or a process has). Every rollout decision asks this, nothing else."""
    return generation > than


@dataclass(frozen=True)
class Target:
    """An engine the API made current: ``generation`` names the change, ``version``
    the build, ``manifest_sha256`` the version's exact manifest (what is fetched);
    ``sha256`` and ``size`` (when known) check a full archive's download (a first-wave
    API announces only those)."""

    generation: int
    version: str
    sha256: str | None = None
    size: int | None = None
    created_at: str | None = None
    manifest_sha256: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.generation, bool) or not isinstance(self.generation, int) or self.generation < 1:
            raise InvalidTarget(f"generation must be a whole number >= 1, got {self.generation!r}")
        if not isinstance(self.version, str) or not _VERSION.match(self.version):
            raise InvalidTarget(f"version must be a build id like 20261128T211800123456Z, got {self.version!r}")
        for name in ("sha256", "manifest_sha256"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _SHA256.match(value)):
                raise InvalidTarget(f"{name} must be 64 lowercase hex digits, got {value!r}")
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0):
            raise InvalidTarget(f"size must be a whole number of bytes, got {self.size!r}")

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Target:
        """From the JSON of ``GET /v1/engine`` (manifest + generation, manifest_sha256;
        sha256 and size of the full archive, when the API has assembled it)."""
        try:
            return cls(
                generation=data["generation"],
                version=data["version"],
                sha256=data.get("sha256"),
                size=data.get("size"),
                created_at=data.get("created_at"),
                manifest_sha256=data.get("manifest_sha256"),
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
    INSTALLED = "installed"  # downloaded (what was missing), checked and installed


class Progress:
    """One rollout's report into Redis (:class:`recsys.cluster.Rollouts`): at start,
    at most every :data:`PROGRESS_INTERVAL` seconds while bytes arrive, at the end.
    A report that cannot be written (Redis away) is logged once and skipped: it never
    fails the rollout."""

    def __init__(
        self, rollouts: Rollouts | None, record: RolloutProgress, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rollouts = rollouts
        self.record = record
        self._clock = clock
        self._started = clock()
        self._last = float("-inf")
        self._warned = False

    def start(self) -> None:
        self._report()

    def add(self, count: int) -> None:
        """``count`` more bytes on disk (negative: a download started again)."""
        self.record.bytes_fetched += count
        if self._clock() - self._last >= PROGRESS_INTERVAL:
            self._report()

    def file_done(self) -> None:
        self.record.files_fetched += 1

    def done(self) -> None:
        self.record.state = "done"
        self._report()

    def failed(self, error: BaseException) -> None:
        self.record.state = "failed"
        self.record.error = error.message if isinstance(error, RecsysError) else f"{type(error).__name__}: {error}"
        self._report()

    @property
    def seconds(self) -> float:
        return self._clock() - self._started

    def _report(self) -> None:
        self._last = self._clock()
        self.record.seconds = round(self._last - self._started, 3)
        if self.rollouts is None:
            return
        try:
            self.rollouts.report(self.record)
        except RecsysError as exc:
            if not self._warned:
                logger.warning("cannot report the rollout's progress (it goes on): %s", exc)
                self._warned = True


class Rollout:
    """Brings one machine's :class:`~recsys.store.EngineStore` to the API's engine, and
    one process's :class:`~recsys.cache.EngineCache` to the machine's.

    ``max_bytes``: the largest archive downloaded; ``on_swap``: called when this
    process starts serving another engine; ``on_behind``: called when a task saw that
    the API is ahead of this machine, or a rollout found that the API replaced the
    version it was installing (the worker wakes its catch-up thread); ``rollouts``:
    where progress is reported (None: nowhere).
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
        rollouts: Rollouts | None = None,
    ) -> None:
        self.store = store
        self.api = api
        self.cache = cache
        self.max_bytes = max_bytes
        self.on_swap = on_swap
        self.on_behind = on_behind
        self.rollouts = rollouts

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
            return Followed.INSTALLED, self._fetch_and_install(target)

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

    def install_built(
        self, archive: Path, *, generation: int, sha256: str, manifest_sha256: str | None = None
    ) -> Installed:
        """Install the full archive this machine built and uploaded (no download needed),
        unless the machine already has that generation or a newer one. When the build
        was staged (:meth:`EngineStore.stage`, with ``manifest_sha256``) the version is
        assembled from the blobs without reading the archive again."""
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
            installed = None
            if manifest_sha256 is not None and self.store.blobs.has(manifest_sha256):
                try:
                    installed = self.store.install_version(manifest_sha256, generation=generation, sha256=sha256)
                except StoreError as exc:  # a staged blob was collected meanwhile
                    logger.info("the staged build is incomplete (%s); installing from the archive", exc)
            if installed is None:
                installed = self.store.install(archive, generation=generation, sha256=sha256)
            record = RolloutProgress(generation, installed.version, installed.manifest_sha256,
                                     bytes_reused=installed.manifest.total_size, data_dir=str(self.store.root))
            Progress(self.rollouts, record).done()  # built here: nothing fetched
            return installed

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
        if self.cache.loaded is None:
            self._serve_what_is_here()  # a booting process serves while another one downloads
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

    def _serve_what_is_here(self) -> None:
        """Load the machine's current engine, if it has one, before following the API
        (which may wait for another process's download); a failure is logged only."""
        try:
            if self.store.current() is not None:
                self.refresh()
        except RecsysError as exc:
            logger.warning("cannot load this machine's current engine before catching up: %s", exc)

    def _fetch_and_install(self, target: Target) -> Installed:
        """Install ``target`` (the lock is held): only its missing files when the API
        serves files, else its full archive."""
        if target.manifest_sha256 is None:
            logger.info("%s is announced without a manifest_sha256 (a first-wave API): downloading its "
                        "full archive", target.describe())
            return self._download_and_install(target)
        manifest = self.api.fetch_manifest(target.manifest_sha256)
        if isinstance(manifest, NotServed):
            if manifest.first_wave:
                logger.info("the API serves no engine files (HTTP %d to GET /v1/engine/files/...: a first-wave "
                            "API); downloading the full archive of %s", manifest.status, target.describe())
                return self._download_and_install(target)
            self.on_behind()  # the API moved on: the catch-up thread follows what it serves now
            raise InvalidTarget(
                f"the API no longer keeps {target.describe()} (manifest {target.manifest_sha256}: "
                f"{manifest.message}); following the API's current engine instead"
            )
        return self._install_delta(target, manifest)

    def _install_delta(self, target: Target, raw: bytes) -> Installed:
        """Download the files of the version whose manifest is ``raw`` that this machine
        lacks, then assemble and activate it (the lock is held)."""
        assert target.manifest_sha256 is not None
        manifest = self.store.accept_manifest(raw, f"the manifest of {target.describe()}")
        if manifest.version != target.version:
            raise InvalidArchive(
                f"the manifest {target.manifest_sha256} names version {manifest.version}, but "
                f"{target.describe()} was announced"
            )
        self.store.adopt()  # a first-wave store's files count as here (normally done at open)
        missing = self.store.missing(manifest)
        missing_shas = {entry.sha256 for entry in missing}
        record = RolloutProgress(
            target.generation, target.version, target.manifest_sha256,
            files_needed=len(missing),
            bytes_needed=sum(entry.size for entry in missing),
            bytes_reused=sum(entry.size for entry in manifest.files if entry.sha256 not in missing_shas),
            data_dir=str(self.store.root),
        )
        progress = Progress(self.rollouts, record)
        progress.start()
        received = resumed = 0
        try:
            try:
                self.store.add_manifest(raw)
                for entry in missing:
                    fetched = self.api.fetch_file(entry.sha256, entry.size, self.store.blobs, on_bytes=progress.add)
                    received, resumed = received + fetched.received, resumed + fetched.resumed
                    progress.file_done()
            except OSError as exc:
                raise StoreError(
                    f"cannot write the files of {target.describe()} into {str(self.store.blobs.root)!r}: {exc} "
                    "(disk full?); what arrived is kept and the next attempt resumes"
                ) from exc
            installed = self.store.install_version(target.manifest_sha256, generation=target.generation)
        except BaseException as exc:
            progress.failed(exc)
            raise
        progress.done()
        reused_files = len(manifest.files) - sum(1 for e in manifest.files if e.sha256 in missing_shas)
        logger.info(
            "downloaded and installed %s: %d of %d files downloaded (%.1f MB received%s), %d files (%.1f MB) "
            "reused from this machine, in %.1f s",
            target.describe(), len(missing), len(manifest.files), received / 1e6,
            f", {resumed / 1e6:.1f} MB resumed from an earlier attempt" if resumed else "",
            reused_files, record.bytes_reused / 1e6, progress.seconds,
        )
        return installed

    def _download_and_install(self, target: Target) -> Installed:
        record = RolloutProgress(target.generation, target.version, target.manifest_sha256,
                                 bytes_needed=target.size or 0, data_dir=str(self.store.root))
        progress = Progress(self.rollouts, record)
        progress.start()

        def announced(length: int | None) -> None:
            if length is not None:
                record.bytes_needed = length

        try:
            try:
                download = self.api.download(self.store.temp_path("download"), max_bytes=self.max_bytes,
                                             on_bytes=progress.add, on_length=announced)
            except OSError as exc:
                raise StoreError(
                    f"cannot write the archive of {target.describe()} into {str(self.store.root)!r}: {exc} "
                    "(disk full?); the engine in service stays"
                ) from exc
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
        except BaseException as exc:
            progress.failed(exc)
            raise
        record.generation, record.version = installed.generation, installed.version
        record.manifest_sha256 = installed.manifest_sha256
        record.files_needed = record.files_fetched = len(installed.manifest.files)
        progress.done()
        logger.info(
            "downloaded and installed generation %d (version %s): the full archive, %.1f MB in %.1f s",
            installed.generation, installed.version, download.size / 1e6, progress.seconds,
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
