"""One live-update apply, as the ``apply_changes`` actor runs it.

1. Read the API's pushed set (``GET /v1/publications/pushed``); nothing pending: done.
2. Take the cluster-wide build lock (held by another apply: that apply picks up what
   is pending when it is done, see 5; held by a full build: that build sends an apply
   when it ends, and the API's resender sends one while the lock is free), renewed from
   a thread while applying.
3. Read the pushed set again (everything pushed until now is coalesced into this one
   apply), fetch the source's publications, merge (:func:`recsys.changes.merge`) and
   build incrementally on this machine's engine with :func:`recsys.build.build_archive`:
   the engine's delta path writes a new segment for the changed publications and
   tombstones for the replaced and deleted ones. No quality comparison (applies are
   not held by the quality gate), but the saved engine must load back with the
   expected count. The manifest says ``kind: "apply"`` and ``changes_through``.
4. Upload it thin (:func:`recsys_workers.building.upload`); the API makes it current,
   marks the changes up to ``changes_through`` applied and broadcasts it; this machine
   installs its own copy. An apply that cannot be built, checked or uploaded (an
   invalid or refused archive, an engine that fails) is reported with ``POST
   /v1/publications/changes/refused``: its changes become ``refused``. A transient
   failure (the API, Redis or the source unreachable, the lock lost) leaves them
   pending for the next apply.
5. Release the lock, then look at the pushed set again: changes that arrived during
   the apply (whose own messages found the lock held) are applied in the next round.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from recsys.build import build_archive
from recsys.changes import merge
from recsys.engine import LogProgress
from recsys.errors import (
    ApplyRefused,
    ArchiveConflict,
    BuildLockHeld,
    ConfigError,
    EngineLoadError,
    InvalidArchive,
    InvalidRecord,
    RecsysError,
    UploadRefused,
)
from recsys.sources import load_publications, open_source
from recsys_workers.building import UNITS, holding, previous_folder, ship
from recsys_workers.services import WorkerServices

__all__ = ["MAX_ROUNDS", "pending_changes", "run_apply"]

logger = logging.getLogger(__name__)

#: Most applies one message runs back to back (changes keep arriving: the next message goes on).
MAX_ROUNDS = 20
#: Failures that refuse an apply's changes (anything else leaves them pending).
REFUSING = (InvalidArchive, UploadRefused, ArchiveConflict, EngineLoadError, InvalidRecord, ApplyRefused)


def run_apply(services: WorkerServices, message_id: str) -> dict[str, Any]:
    """Apply what is pending, round after round; the task's result:
    ``{"applied": [<round>...], "status": "done" | "busy" | "no_engine"}``."""
    rounds: list[dict[str, Any]] = []
    lock = services.build_lock
    while len(rounds) < MAX_ROUNDS:
        if not services.api.pushed().pending:
            return {"status": "done", "applied": rounds}
        try:
            token = lock.acquire(message_id=message_id, engine=services.settings.engine, kind="apply")
        except BuildLockHeld as held:
            logger.info("apply %s: the build lock is held (%s); its holder or a later apply takes the pending "
                        "changes", message_id, held.message)
            return {"status": "busy", "applied": rounds, "holder": held.holder}
        outcome = _apply_holding(services, token, message_id)
        if outcome is None:
            return {"status": "no_engine" if services.api.current() is None else "done", "applied": rounds}
        rounds.append(outcome)
    return {"status": "done", "applied": rounds}


def pending_changes(services: WorkerServices) -> tuple[int, ...]:
    """The ids of the pushed changes still pending (none when the API cannot say: logged)."""
    try:
        return services.api.pushed().pending
    except RecsysError as exc:
        logger.warning("cannot ask the API for pending publication changes: %s", exc)
        return ()


def _apply_holding(services: WorkerServices, token: str, message_id: str) -> dict[str, Any] | None:
    """One apply under the lock; None when there is nothing to apply (or no engine yet)."""
    settings = services.settings
    started = time.monotonic()
    through: int | None = None
    with holding(services, token, prefix=f"apply-{message_id[:8]}-") as (renewer, workdir):
        try:
            if not settings.api_token:
                raise ConfigError("RECSYS_API_TOKEN is empty: this worker cannot read pushed changes or upload")
            pushed = services.api.pushed()
            if not pushed.pending:
                return None
            if services.api.current() is None:
                logger.info("apply %s: no engine yet; the first build includes the %d pending changes", message_id,
                            len(pushed.pending))
                return None
            through = pushed.changes_through
            source = open_source(settings.source, settings)
            fetched = load_publications(source, progress=LogProgress(logger, units=UNITS))
            corpus = merge(fetched, pushed)
            logger.info("apply %s: changes %s (through %d): %d publications (%d pushed upserts, %d pushed deletes)",
                        message_id, ",".join(map(str, pushed.pending[:20])), through, len(corpus),
                        len(pushed.upserts), len(pushed.deletes))
            archive = build_archive(
                corpus, workdir / "engine.zip", engine=settings.engine, registry=services.registry,
                settings=settings, previous=previous_folder(services), kind="apply", changes_through=through,
                measure_quality=False, check_load=True,
            )
            if archive.manifest.publications != len(corpus):
                raise ApplyRefused(f"the applied engine holds {archive.manifest.publications} publications, not the "
                                   f"{len(corpus)} of its corpus")
            generation, uploaded = ship(services, archive, workdir, message_id, renewer)
            seconds = time.monotonic() - started
            logger.info("apply %s: changes through %d are generation %s (%d publications, uploaded %d bytes) in "
                        "%.1f s", message_id, through, generation, archive.manifest.publications, uploaded["bytes"],
                        seconds)
            return {
                "engine": {"name": archive.manifest.engine, "version": archive.manifest.version,
                           "generation": generation},
                "changes": list(pushed.pending), "changes_through": through,
                "publications": archive.manifest.publications, "uploaded": uploaded, "seconds": round(seconds, 1),
            }
        except REFUSING as exc:
            if through is not None:
                _refuse(services, through, exc)
            raise ApplyRefused(f"the apply of changes through {through} was refused: {exc.code}: {exc.message}") \
                from exc


def _refuse(services: WorkerServices, through: int, exc: RecsysError) -> None:
    reason = f"{exc.code}: {exc.message}"
    try:
        count = services.api.report_refused(through, reason)
        logger.error("apply: %d changes through %d refused: %s", count, through, reason)
    except RecsysError as report:
        logger.error("apply: could not report the refused changes through %d (%s); they stay pending: %s",
                     through, report, reason)
