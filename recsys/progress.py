"""Progress of long tasks (builds, live-update applies), recorded in the cluster's KV.

A task reports progress through the engine's :class:`~recsys.engine.Progress` hook
(``progress("encode", done=1200, total=5000)``). :class:`ProgressRecorder` is such a
hook: it turns each call into a :class:`ProgressRecord` (stage, done, total, rate per
second since the stage began, seconds left) and stores it under the task's id, at
most every ``interval`` seconds per stage (and always at a stage's first and last
step), so that ``GET /v1/tasks/{id}`` can serve it as ``"progress"``. It also passes
every call on to another hook (the build's log lines) and every stored record to
listeners (the worker's metrics).

:class:`BuildHistory` keeps the last builds with their outcome and duration (one
JSON list, written by the one build that holds the build lock).

Keys (under ``recsys:``, see :mod:`recsys.cluster`)::

    recsys:progress:<task_id>   the task's last ProgressRecord (JSON), kept as long as results
    recsys:build:history        the last builds, newest first (JSON list)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from recsys.cluster import utcnow_iso
from recsys.engine import NULL_PROGRESS, Progress
from recsys.errors import RecsysError
from recsys.kv import KV

__all__ = [
    "BUILD_HISTORY_KEY",
    "HISTORY_LIMIT",
    "PROGRESS_PREFIX",
    "BuildHistory",
    "ProgressRecord",
    "ProgressRecorder",
    "ProgressStore",
]

logger = logging.getLogger(__name__)

PROGRESS_PREFIX = "recsys:progress:"
BUILD_HISTORY_KEY = "recsys:build:history"
#: Builds kept in the history.
HISTORY_LIMIT = 20
#: Seconds a build's history is kept after the last build.
HISTORY_TTL = 30 * 86400.0


@dataclass(frozen=True)
class ProgressRecord:
    """Where a task stands: ``stage`` (fetch, split, encode, index, ...), ``done`` of
    ``total`` (None: unknown), ``rate`` per second since the stage began and
    ``eta_s``, the seconds the stage still needs at that rate (None when unknown)."""

    stage: str
    done: int
    total: int | None
    rate: float
    eta_s: float | None
    started_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgressRecord:
        total = data.get("total")
        eta = data.get("eta_s")
        return cls(
            stage=str(data.get("stage", "")), done=int(data.get("done") or 0),
            total=None if total is None else int(total), rate=float(data.get("rate") or 0.0),
            eta_s=None if eta is None else float(eta), started_at=str(data.get("started_at", "")),
            updated_at=str(data.get("updated_at", "")),
        )


class ProgressStore:
    """Progress records by task id, kept ``ttl`` seconds after their last update."""

    def __init__(self, kv: KV, ttl: float) -> None:
        self.kv = kv
        self.ttl = ttl

    def put(self, task_id: str, record: ProgressRecord) -> None:
        self.kv.set(PROGRESS_PREFIX + task_id, json.dumps(record.to_dict()), ttl=self.ttl)

    def get(self, task_id: str) -> ProgressRecord | None:
        """The task's last record, or None (no progress reported, or expired)."""
        value = self.kv.get(PROGRESS_PREFIX + task_id)
        if value is None:
            return None
        try:
            data = json.loads(value)
            return ProgressRecord.from_dict(data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            return None


class ProgressRecorder:
    """A :class:`~recsys.engine.Progress` that records where a task stands (see the module doc).

    ``also``: another hook called with every report (e.g. a LogProgress); ``listeners``:
    called with every stored record. Storing never fails the task: a KV error is logged
    once and the next report tries again.
    """

    def __init__(
        self,
        store: ProgressStore | None,
        task_id: str,
        *,
        also: Progress = NULL_PROGRESS,
        listeners: Iterable[Callable[[ProgressRecord], None]] = (),
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.task_id = task_id
        self.also = also
        self.listeners = list(listeners)
        self.interval = interval
        self.clock = clock
        self.started_at = utcnow_iso()
        self.last: ProgressRecord | None = None
        self._stages: dict[str, tuple[float, int]] = {}
        self._stored_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._failing = False

    def __call__(self, stage: str, done: int, total: int | None = None) -> None:
        self.also(stage, done, total)
        now = self.clock()
        with self._lock:
            first = stage not in self._stages
            began, first_done = self._stages.setdefault(stage, (now, done))
            finished = total is not None and done >= total
            if not (first or finished) and now - self._stored_at.get(stage, float("-inf")) < self.interval:
                return
            self._stored_at[stage] = now
            elapsed = now - began
            rate = (done - first_done) / elapsed if elapsed > 0 else 0.0
            eta = None
            if total is not None:
                eta = 0.0 if finished else ((total - done) / rate if rate > 0 else None)
            record = ProgressRecord(stage, int(done), total, round(rate, 3),
                                    None if eta is None else round(eta, 1), self.started_at, utcnow_iso())
            self.last = record
        self._store(record)

    def _store(self, record: ProgressRecord) -> None:
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:
                logger.warning("a progress listener failed", exc_info=True)
        if self.store is None:
            return
        try:
            self.store.put(self.task_id, record)
        except RecsysError as exc:
            if not self._failing:
                logger.warning("cannot record the progress of task %s (retried at its next step): %s",
                               self.task_id, exc)
            self._failing = True
        else:
            self._failing = False


class BuildHistory:
    """The last :data:`HISTORY_LIMIT` builds, newest first: ``{"task_id", "outcome",
    "seconds", "finished_at", ...}`` each. One build runs at a time (the build lock), so
    a read-modify-write is safe; a redelivered build replaces its earlier entry."""

    def __init__(self, kv: KV, limit: int = HISTORY_LIMIT) -> None:
        self.kv = kv
        self.limit = limit

    def add(self, entry: dict[str, Any]) -> None:
        entries = [e for e in self.last() if e.get("task_id") != entry.get("task_id")]
        entries.insert(0, entry)
        self.kv.set(BUILD_HISTORY_KEY, json.dumps(entries[: self.limit]), ttl=HISTORY_TTL)

    def last(self) -> list[dict[str, Any]]:
        value = self.kv.get(BUILD_HISTORY_KEY)
        if value is None:
            return []
        try:
            data = json.loads(value)
        except ValueError:
            return []
        return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
