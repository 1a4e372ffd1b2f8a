"""A build's progress and outcome, recorded for the console and ``GET /v1/tasks/{id}``.

* :func:`build_progress`: the Progress hook ``build_index`` passes to the source and
  the engine: it logs (the hook it is given), records the task's progress in Redis
  (:class:`recsys.progress.ProgressRecorder`, kept as long as results) and feeds the
  pool's build metrics when it serves them.
* :class:`BuildRecorder`: a middleware that adds every ``build_index`` run to the
  build history (:class:`recsys.progress.BuildHistory`): outcome, error code,
  duration, the engine it made.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from dramatiq import Broker, Middleware

from recsys import protocol
from recsys.cluster import utcnow_iso
from recsys.engine import Progress
from recsys.errors import RecsysError
from recsys.progress import BuildHistory, ProgressRecorder, ProgressStore
from recsys_workers.services import WorkerServices

__all__ = ["BuildRecorder", "build_progress"]

logger = logging.getLogger(__name__)

#: The error code of a build refused because another one holds the lock.
REFUSED_CODE = "build_running"


def build_progress(services: WorkerServices, task_id: str, log: Progress) -> ProgressRecorder:
    """The Progress hook of build ``task_id``: ``log`` plus the records described above."""
    metrics = services.metrics
    return ProgressRecorder(
        ProgressStore(services.kv, services.settings.result_ttl), task_id, also=log,
        listeners=[metrics.build_progress] if metrics is not None else [],
    )


def history_entry(
    message_id: str, started_at: str, seconds: float, result: Any, exception: BaseException | None
) -> dict[str, Any]:
    """The build history's entry for one ``build_index`` run."""
    entry: dict[str, Any] = {
        "task_id": message_id, "started_at": started_at, "finished_at": utcnow_iso(),
        "seconds": round(seconds, 1), "host": socket.gethostname(), "pid": os.getpid(),
    }
    error = protocol.error_of(result)
    if exception is not None:
        code = exception.code if isinstance(exception, RecsysError) else "internal"
        error = {"code": code, "message": f"{type(exception).__name__}: {exception}"}
    if error is not None:
        entry.update(outcome="refused" if error["code"] == REFUSED_CODE else "failed", error=error)
        return entry
    entry["outcome"] = "succeeded"
    if isinstance(result, dict):
        for key in ("engine", "publications", "sentences", "archive"):
            if key in result:
                entry[key] = result[key]
    return entry


class BuildRecorder(Middleware):
    """Adds each ``build_index`` run to the build history (a failure to record is logged)."""

    def __init__(self, services: WorkerServices) -> None:
        self.services = services
        self._started: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if message.actor_name == protocol.BUILD_ACTOR:
            with self._lock:
                self._started[message.message_id] = (time.monotonic(), utcnow_iso())

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        with self._lock:
            started = self._started.pop(message.message_id, None)
        if started is None:
            return
        entry = history_entry(str(message.message_id), started[1], time.monotonic() - started[0], result, exception)
        try:
            BuildHistory(self.services.kv).add(entry)
        except RecsysError as exc:
            logger.warning("could not record build %s in the build history: %s", message.message_id, exc)

    def after_skip_message(self, broker: Broker, message: Any) -> None:
        with self._lock:
            self._started.pop(message.message_id, None)
