"""The two background threads of a worker process: heartbeat and catch-up.

* :class:`HeartbeatThread` records this process in Redis every
  ``RECSYS_HEARTBEAT_INTERVAL`` seconds (host, pid, queues, the engine it has loaded,
  data dir; the record expires after three intervals), and at once when
  :meth:`Runtime.request_heartbeat` is called (after an engine swap). On shutdown it
  deletes the record.
* :class:`CatchUpThread` asks the API for its current engine at start, every
  ``RECSYS_CATCHUP_INTERVAL`` seconds, and at once when
  :meth:`Runtime.request_catch_up` is called (after each bind of the broadcast
  queue, or when a task saw a newer generation); it follows it if newer than the
  machine's and loads the machine's engine into this process. A worker that was
  down or cut off during a rollout thus converges by itself.

Both log a failure once when it starts and once when it ends, not every interval.
"""

from __future__ import annotations

import logging
import threading

from recsys.cluster import WorkerInfo
from recsys.errors import InvalidTarget, RecsysError
from recsys_workers.runtime import Runtime
from recsys_workers.sync import Followed, Target

__all__ = ["CatchUpThread", "HeartbeatThread", "catch_up"]

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

    def __init__(self, runtime: Runtime, queues: list[str]) -> None:
        super().__init__("heartbeat", runtime.settings.heartbeat_interval, runtime.heartbeat_requested)
        self.runtime = runtime
        self.info = WorkerInfo(queues=sorted(queues), data_dir=str(runtime.data_dir))

    def tick(self) -> None:
        loaded = self.runtime.loaded()
        if loaded is not None:
            self.info.generation = loaded.generation
            self.info.version = loaded.version
            self.info.engine = loaded.manifest.engine
        self.runtime.heartbeats.beat(self.info)

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        try:
            self.runtime.heartbeats.forget(self.info)
        except RecsysError as exc:
            logger.warning("could not delete this worker's heartbeat (it expires by itself): %s", exc)


def catch_up(runtime: Runtime) -> Followed | None:
    """Follow the API's current engine if it is newer than the machine's, then load the
    machine's engine into this process. Returns what following did (None: the API
    has no engine yet). Raises RecsysError when the API cannot be asked or the
    download fails; the engine in service stays."""
    followed = None
    problem: RecsysError | None = None
    try:
        data = runtime.api.current()
        if data is not None:
            target = Target.from_api(data)
            followed, _ = runtime.sync.follow(target)
            if followed is not Followed.IGNORED:
                logger.info("catch-up: %s %s", followed.value, target.describe())
    except InvalidTarget as exc:
        problem = RecsysError(f"the API's answer to GET /v1/engine cannot be followed: {exc}")
    except RecsysError as exc:
        problem = exc
    # Whatever the API said, serve the newest engine this machine has.
    runtime.refresh()
    if problem is not None:
        raise problem
    return followed


class CatchUpThread(_Periodic):
    """Runs :func:`catch_up` periodically and on request."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__("catch-up", runtime.settings.catchup_interval, runtime.catch_up_requested)
        self.runtime = runtime

    def tick(self) -> None:
        catch_up(self.runtime)
