"""The API's side of live publication updates (see :mod:`recsys.changes`).

:class:`LiveUpdates` sends ``apply_changes`` (one message per push; the worker coalesces
what is pending, one apply at a time under the build lock) and makes the change log
follow the engine in service (:meth:`LiveUpdates.follow`, after each upload and
rollback). :class:`Resender` runs :meth:`LiveUpdates.tick` at start and every
``RECSYS_CHANGES_RESEND_INTERVAL`` seconds: it follows the current engine again and
re-sends the apply while changes are pending, so a change recorded just before a crash
(committed, its message never sent), or whose apply died with its worker, is applied.
"""

from __future__ import annotations

import logging
import threading

from recsys import protocol
from recsys.changes import ChangeLog
from recsys.cluster import BuildLock
from recsys.errors import RecsysError
from recsys_api.archive_store import ArchiveStore, StoredVersion
from recsys_api.tasks import TaskClient

__all__ = ["LiveUpdates", "Resender"]

logger = logging.getLogger(__name__)


class LiveUpdates:
    def __init__(self, changes: ChangeLog, tasks: TaskClient, queue: str, store: ArchiveStore,
                 lock: BuildLock | None = None) -> None:
        self.lock = lock
        self.changes = changes
        self.tasks = tasks
        self.queue = queue
        self.store = store

    def send_apply(self) -> str | None:
        """Send one ``apply_changes``; its task id, or None when the broker is unreachable
        (logged: the change is durable, the resender sends it later)."""
        message = self.tasks.message(protocol.APPLY_ACTOR, self.queue)
        try:
            self.tasks.send(message)
        except RecsysError as exc:
            logger.warning("could not send apply_changes (the pending changes are kept and re-sent): %s", exc)
            return None
        return message.message_id

    def follow(self, version: StoredVersion) -> None:
        """Changes follow ``version``, now current: applied up to its ``changes_through``,
        rolled back past it (errors are logged: the next tick follows again)."""
        try:
            applied, rolled_back = self.changes.reconcile(version.generation, version.manifest.changes_through)
        except RecsysError as exc:
            logger.error("could not update the publication change log for generation %d: %s", version.generation, exc)
            return
        if applied or rolled_back:
            logger.info("publication changes: %d applied, %d rolled back by generation %d (changes through %s)",
                        applied, rolled_back, version.generation, version.manifest.changes_through)

    def tick(self) -> None:
        """Follow the current engine, and send an apply if changes are pending (not while
        a build or apply holds the build lock: its holder, or the next tick, takes them)."""
        current = self.store.current()
        if current is not None:
            self.follow(current)
        pending = self.changes.pending()
        if pending and self._lock_held():
            logger.debug("%d publication changes pending; the build lock is held, not re-sending", len(pending))
        elif pending:
            logger.info("%d publication changes pending (%d..%d): sending apply_changes", len(pending), pending[0],
                        pending[-1])
            self.send_apply()

    def _lock_held(self) -> bool:
        if self.lock is None:
            return False
        try:
            return self.lock.holder() is not None
        except RecsysError:  # Redis unreachable: send anyway (the worker checks the lock itself)
            return False


class Resender(threading.Thread):
    """Runs ``live.tick()`` now and every ``interval`` seconds until stopped (:meth:`stop`,
    or ``stopped`` set by its owner)."""

    def __init__(self, live: LiveUpdates, interval: float, stopped: threading.Event | None = None) -> None:
        super().__init__(name="changes-resend", daemon=True)
        self.live = live
        self.interval = interval
        self._stopped = stopped if stopped is not None else threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.live.tick()
            except Exception:
                logger.exception("re-sending pending publication changes failed; trying again in %.0f s",
                                 self.interval)
            if self._stopped.wait(self.interval):
                return

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(5.0)
