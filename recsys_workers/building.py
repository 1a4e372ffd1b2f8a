"""One engine build, as the ``build_index`` actor runs it.

1. Clear the API's "build queued" marker for this message, take the cluster-wide
   build lock (:class:`~recsys.cluster.BuildLock`; held: :class:`~recsys.errors.BuildLockHeld`, the
   caller answers ``build_running``), and renew it from a thread while building.
2. Fetch every publication (``RECSYS_SOURCE``), logging count, rate and time left,
   and merge the API's pushed set into it (``GET /v1/publications/pushed``: pushed
   upserts replace or add records, pushed deletes remove them; :func:`recsys.changes.merge`).
   The manifest records ``kind: "build"`` and the highest change id included
   (``changes_through``), so changes pushed meanwhile stay pending.
3. Build with ``RECSYS_ENGINE`` through :func:`recsys.build.build_archive` (the same
   path as ``recsys build``), reusing this machine's current engine folder when it
   is the same engine; the archive is packed and verified.
4. Upload it with ``PUT /v1/engine/archive`` (streamed, retried on transient errors),
   thin: the files of the API's current version (``GET /v1/engine``) are left out
   (:func:`recsys.archive.thin_copy`); when the API answers ``missing_files`` (it no
   longer holds one of them), or is a first-wave API (no ``manifest_sha256``), the full
   archive goes. The API makes it current and broadcasts it. This machine installs
   its own full copy at once (no download: :meth:`Rollout.install_built
   <recsys_workers.rollout.Rollout.install_built>`).
5. Whatever happens: delete the temporary files, stop renewing, release the lock.

A source or engine failure raises before anything is uploaded, so the engine in
service stays. If the lock is lost while building (Redis unreachable for longer
than its expiry, and another build took it), nothing is uploaded.

**Redelivery.** RabbitMQ redelivers a message whose consumer died, or whose channel
it closed because the message stayed unacknowledged longer than ``consumer_timeout``
(30 min by default; see docs/workers.md). A redelivered copy of a build that is
still running elsewhere finds the lock held *for its own message id*: it does not
build, it waits for that build to end and returns the result it stored; if that
build's worker died instead (the lock expired with no result), it builds.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dramatiq.results import ResultBackend, ResultMissing

from recsys.archive import Limits, VerifiedArchive, thin_copy
from recsys.blobs import valid_sha256
from recsys.build import build_archive
from recsys.changes import merge
from recsys.cluster import BuildLock, TaskRecords
from recsys.engine import LogProgress
from recsys.errors import BuildLockHeld, BuildLockLost, ConfigError, MissingFiles, RecsysError
from recsys.sources import load_publications, open_source
from recsys_workers.progress import build_progress
from recsys_workers.services import WorkerServices

__all__ = ["LockRenewer", "clean_builds_folder", "holding", "install_here", "previous_folder", "run_build", "ship",
           "stage_here", "upload"]

logger = logging.getLogger(__name__)

UNITS = {"fetch": "records", "split": "publications", "encode": "sentences", "index": "steps"}


class LockRenewer(threading.Thread):
    """Renews the build lock every third of its expiry until stopped."""

    def __init__(self, lock: BuildLock, token: str) -> None:
        super().__init__(name="build-lock", daemon=True)
        self.lock = lock
        self.token = token
        self.lost = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = max(1.0, self.lock.ttl / 3)
        while not self._stop_event.wait(interval):
            try:
                if not self.lock.renew(self.token):
                    self.lost = True
                    logger.error("the build lock was lost (it expired, or another build took it); "
                                 "this build will not be uploaded")
                    return
            except RecsysError as exc:
                logger.warning("could not renew the build lock (it expires in %.0f s unless renewed): %s",
                               self.lock.ttl, exc)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(5.0)


def previous_folder(services: WorkerServices) -> Path | None:
    """This machine's engine in service, when the build makes the same engine."""
    try:
        current = services.store.current()
    except RecsysError as exc:
        logger.warning("cannot read this machine's engine store, building from scratch: %s", exc)
        return None
    if current is not None and current.manifest.engine == services.settings.engine:
        return current.path
    return None


def run_build(services: WorkerServices, message: Any, results: ResultBackend | None = None, *,
              force: bool = False) -> dict[str, Any]:
    """Run the build of ``message`` (a build_index message); returns the task's result.
    ``results``: where the broker stores task results (to answer a redelivered copy);
    ``force``: the upload asks the API to pass its quality gate.

    Raises BuildLockHeld when another build holds the lock, RecsysError when the
    build fails (nothing uploaded, the engine in service stays).
    """
    lock = services.build_lock
    message_id = str(message.message_id)
    lock.clear_queued(message_id)
    try:
        token = lock.acquire(message_id=message_id, engine=services.settings.engine)
    except BuildLockHeld as held:
        if held.holder.get("message_id") != message_id:
            raise
        return _await_original(services, message, results, force=force)
    return _build_holding(services, token, message_id, force=force)


def _await_original(services: WorkerServices, message: Any, results: ResultBackend | None, *,
                    force: bool) -> dict[str, Any]:
    """A redelivered copy: wait for the build of the same message to end elsewhere."""
    lock = services.build_lock
    logger.warning("build %s is redelivered while it still runs elsewhere; waiting for that build to end",
                   message.message_id)
    while (holder := lock.holder()) is not None and holder.get("message_id") == message.message_id:
        time.sleep(max(1.0, lock.ttl / 6))
    if results is not None:
        try:
            result = results.get_result(message, block=False)
        except ResultMissing:  # that build died without storing a result
            result = None
        if isinstance(result, dict):
            logger.info("build %s ended elsewhere; returning its result", message.message_id)
            return dict(result)
    logger.warning("build %s ended elsewhere without a result (its worker died?); building again",
                   message.message_id)
    return run_build(services, message, results, force=force)


def clean_builds_folder(folder: Path) -> None:
    """Remove leftovers of killed builds: the build lock is ours, so no build runs."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.iterdir():
        logger.info("removing %s, left by an interrupted build", leftover)
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextmanager
def holding(services: WorkerServices, token: str, prefix: str) -> Iterator[tuple[LockRenewer, Path]]:
    """What a task holding the build lock (``token``) works with: a thread renewing the
    lock, and a fresh work folder under ``<RECSYS_DATA_DIR>/builds`` (leftovers of killed
    builds removed first). On leaving: the folder is deleted, renewing stops, the lock
    is released (a failure to release is logged: the lock expires)."""
    lock = services.build_lock
    renewer = LockRenewer(lock, token)
    renewer.start()
    workdir: Path | None = None
    try:
        builds = services.settings.data_dir / "builds"
        clean_builds_folder(builds)
        workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=builds))
        yield renewer, workdir
    finally:
        renewer.stop()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        try:
            lock.release(token)
        except RecsysError as exc:
            logger.warning("could not release the build lock (it expires in %.0f s): %s", lock.ttl, exc)


def ship(services: WorkerServices, archive: VerifiedArchive, workdir: Path, message_id: str, renewer: LockRenewer,
         *, force: bool = False) -> tuple[Any, dict[str, Any]]:
    """Upload a built archive and install it on this machine, unless the lock was lost
    meanwhile (BuildLockLost: another build may run); returns (generation, upload report)."""
    if renewer.lost:
        raise BuildLockLost("the build lock was lost while this task held it: not uploading (another build may run)")
    stage_here(services, archive)
    answer, uploaded = upload(services, archive, workdir, message_id, force=force)
    generation = answer.get("generation")
    install_here(services, archive, generation)
    return generation, uploaded


def _build_holding(services: WorkerServices, token: str, message_id: str, *, force: bool = False) -> dict[str, Any]:
    settings = services.settings
    started = time.monotonic()
    with holding(services, token, prefix=f"build-{message_id[:8]}-") as (renewer, workdir):
        if not settings.api_token:
            raise ConfigError("RECSYS_API_TOKEN is empty: this worker could build but not upload; set the API's token")
        progress = build_progress(services, message_id, LogProgress(logger, units=UNITS))
        source = open_source(settings.source, settings)
        logger.info("build %s: fetching publications from %s", message_id, source.description)
        fetched = load_publications(source, progress=progress)
        pushed = services.api.pushed()
        publications = merge(fetched, pushed)
        logger.info("build %s: %d publications (%d from the source, %d pushed upserts, %d pushed deletes, changes "
                    "through %d); building engine %r", message_id, len(publications), len(fetched),
                    len(pushed.upserts), len(pushed.deletes), pushed.changes_through, settings.engine)
        archive = build_archive(
            publications,
            workdir / "engine.zip",
            engine=settings.engine,
            registry=services.registry,
            settings=settings,
            progress=progress,
            previous=previous_folder(services),
            kind="build",
            changes_through=pushed.changes_through,
        )
        generation, uploaded = ship(services, archive, workdir, message_id, renewer, force=force)
        seconds = time.monotonic() - started
        logger.info("build %s: done in %.1f s: version %s is generation %s", message_id, seconds,
                    archive.manifest.version, generation)
        return {
            "engine": {"name": archive.manifest.engine, "version": archive.manifest.version, "generation": generation},
            "publications": archive.manifest.publications,
            "sentences": archive.manifest.sentences,
            "archive": {"size": archive.size, "sha256": archive.sha256},
            "uploaded": uploaded,
            "seconds": round(seconds, 1),
        }


def _api_holds(services: WorkerServices, archive: VerifiedArchive) -> set[str]:
    """The sha256s of the archive's files that the API's current version has too (what
    a thin upload leaves out); none when the API cannot take thin archives."""
    try:
        current = services.api.current()
    except RecsysError as exc:
        logger.warning("cannot ask the API which files it holds (%s); uploading the full archive", exc)
        return set()
    if current is None or "manifest_sha256" not in current or not isinstance(current.get("files"), list):
        return set()  # no engine yet, or a first-wave API: it takes full archives only
    held = {str(f["sha256"]) for f in current["files"] if isinstance(f, dict) and valid_sha256(f.get("sha256"))}
    return held & {entry.sha256 for entry in archive.manifest.files}


def upload(
    services: WorkerServices, archive: VerifiedArchive, workdir: Path, message_id: str, *, force: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Upload ``archive``, thin when the API holds some of its files (``force``: past the
    API's quality gate); returns the API's answer and what was sent (``{"bytes", "files", "thin"}``)."""
    api_url = services.settings.api_url
    files = len(archive.manifest.files)
    leave_out = _api_holds(services, archive)
    if leave_out:
        thin = thin_copy(archive, workdir / "thin.zip", leave_out, Limits.from_settings(services.settings))
        try:
            logger.info(
                "build %s: uploading %s thin to %s: %d of %d files, %.1f MB (the full archive is %.1f MB; the API "
                "holds the other files)",
                message_id, archive.manifest.version, api_url, len(thin.members), files, thin.size / 1e6,
                archive.size / 1e6,
            )
            answer = services.api.upload(thin.path, force=force)
            return answer, {"bytes": thin.size, "files": len(thin.members), "thin": True}
        except MissingFiles as exc:
            logger.warning("build %s: the API lacks %d of the files the thin archive left out (%s); uploading "
                           "the full archive", message_id, len(exc.missing) or len(leave_out), exc)
        finally:
            thin.path.unlink(missing_ok=True)
    logger.info("build %s: uploading %s (%.1f MB) to %s", message_id, archive.manifest.version,
                archive.size / 1e6, api_url)
    answer = services.api.upload(archive.path, force=force)
    return answer, {"bytes": archive.size, "files": files, "thin": False}


def stage_here(services: WorkerServices, archive: VerifiedArchive) -> None:
    """Put the build's files into this machine's blobs before the upload, so that the
    broadcast that follows it finds them here (no process of this machine downloads)."""
    try:
        services.rollout.store.stage(archive)
    except RecsysError as exc:
        logger.warning("could not stage the build on this machine (it may download it back): %s", exc)


def install_here(services: WorkerServices, archive: VerifiedArchive, generation: Any) -> None:
    """Install the uploaded archive on this machine, so it need not download it back."""
    if not isinstance(generation, int) or isinstance(generation, bool):
        logger.warning("the API's answer has no generation; this machine will download the engine instead")
        return
    try:
        services.rollout.install_built(archive.path, generation=generation, sha256=archive.sha256,
                                       manifest_sha256=archive.manifest_sha256)
        services.rollout.refresh()
    except RecsysError as exc:
        logger.warning("could not install the built engine on this machine (it will download it): %s", exc)


def record_task(services: WorkerServices, task_id: str, actor: str, queue: str) -> None:
    """Record a task sent by a worker (a scheduled build) as the API records its own."""
    try:
        TaskRecords(services.kv, services.settings.result_ttl).record(task_id, actor=actor, queue=queue)
    except RecsysError as exc:
        logger.warning("could not record task %s: %s", task_id, exc)
