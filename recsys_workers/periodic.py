"""The two periodic threads of a worker process: heartbeat and catch-up.

* :class:`HeartbeatThread` records this process in Redis every
  ``RECSYS_HEARTBEAT_INTERVAL`` seconds (host, pid, queues, the engine it has loaded,
  data dir; the record expires after three intervals), and at once when
  :meth:`WorkerServices.request_heartbeat` is called (after an engine swap). On
  shutdown it deletes the record.
* :class:`CatchUpThread` runs :meth:`Rollout.catch_up
  <recsys_workers.rollout.Rollout.catch_up>` at start, every
  ``RECSYS_CATCHUP_INTERVAL`` seconds, and at once when
  :meth:`WorkerServices.request_catch_up` is called (after each bind of the broadcast
  queue, or when a task saw a newer generation): it asks the API for its current
  engine, follows it if newer than the machine's and loads the machine's engine into
  this process. A worker that was down or cut off during a rollout thus converges by
  itself.

Both log a failure once when it starts and once when it ends, not every interval.
"""

from __future__ import annotations

import logging
import threading

from recsys.cluster import WorkerInfo
from recsys.errors import RecsysError
from recsys_workers.services import WorkerServices

__all__ = ["CatchUpThread", "HeartbeatThread"]

logger = logging.getLogger(__name__)


class _Periodic(threading.Thread):
    """Runs :meth:`tick` now, then every ``interval`` seconds or when ``wake`` is set."""

    def __init__(self, name: str, interval: float, wake: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self._wake = wake
        self._stopping = False
        self._problem: str | None = None

    def run(self) -> None:
        while not self._stopping:
            try:
                self.tick()
                self._recovered()
            except Exception as exc:
                self._failed(exc)
            self._wake.wait(self.interval)
            self._wake.clear()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def tick(self) -> None:
        raise NotImplementedError

    def _failed(self, exc: Exception) -> None:
        problem = f"{type(exc).__name__}: {exc}"
        if problem != self._problem:
            level = logging.WARNING if isinstance(exc, RecsysError) else logging.ERROR
            logger.log(level, "%s failed: %s (retrying every %.0f s; logged again when it changes)",
                       self.name, problem, self.interval, exc_info=not isinstance(exc, RecsysError))
        self._problem = problem

    def _recovered(self) -> None:
        if self._problem is not None:
            logger.info("%s works again", self.name)
            self._problem = None


class HeartbeatThread(_Periodic):
    """Writes this process's :class:`~recsys.cluster.WorkerInfo`."""

    def __init__(self, services: WorkerServices, queues: list[str]) -> None:
        super().__init__("heartbeat", services.settings.heartbeat_interval, services.heartbeat_requested)
        self.services = services
        self.info = WorkerInfo(queues=sorted(queues), data_dir=str(services.settings.data_dir))

    def tick(self) -> None:
        loaded = self.services.loaded()
        if loaded is not None:
            self.info.generation = loaded.generation
            self.info.version = loaded.version
            self.info.engine = loaded.manifest.engine
        self.services.heartbeats.beat(self.info)

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        try:
            self.services.heartbeats.forget(self.info)
        except RecsysError as exc:
            logger.warning("could not delete this worker's heartbeat (it expires by itself): %s", exc)


class CatchUpThread(_Periodic):
    """Runs :meth:`Rollout.catch_up <recsys_workers.rollout.Rollout.catch_up>` periodically and on request."""

    def __init__(self, services: WorkerServices) -> None:
        super().__init__("catch-up", services.settings.catchup_interval, services.catch_up_requested)
        self.services = services

    def tick(self) -> None:
        self.services.rollout.catch_up()
