"""Starting ``build_index``: at most one queued or running build across the cluster.

Used by ``POST /v1/engine/builds`` and by the start-engine step. The queued marker
(:meth:`recsys.cluster.BuildLock.mark_queued`) is set before the message is sent, so
two API processes (or a client and the start step) never both send one; the worker
clears it when the build starts, and holds the build lock while it runs.
"""

from __future__ import annotations

from recsys import protocol
from recsys.cluster import BuildLock
from recsys.errors import BuildBusy, Unavailable
from recsys_api.tasks import TaskClient

__all__ = ["BuildStarter"]


class BuildStarter:
    def __init__(self, tasks: TaskClient, lock: BuildLock, queue: str) -> None:
        self.tasks = tasks
        self.lock = lock
        self.queue = queue

    def start(self, *, force: bool = False) -> str:
        """Send one ``build_index`` (with ``force=True``: its upload passes the quality
        gate); returns its task id. Raises BuildBusy or Unavailable."""
        reason = self.lock.busy()
        if reason is not None:
            raise BuildBusy(reason)
        # a normal build's message has no kwargs, as a first-wave worker expects
        message = self.tasks.message(protocol.BUILD_ACTOR, self.queue, {"force": True} if force else None)
        if not self.lock.mark_queued(message.message_id):
            raise BuildBusy(self.lock.busy() or "a build was queued at the same moment")
        try:
            self.tasks.send(message)
        except Unavailable:
            self.lock.clear_queued(message.message_id)
            raise
        return message.message_id

    def running(self) -> str | None:
        """The task id of the build now running or queued (the build lock's holder's, else
        the queued marker's), or None when there is none."""
        holder = self.lock.holder()
        if holder is not None and holder.get("message_id"):
            return str(holder["message_id"])
        return self.lock.queued()
