"""The workers' result store on Redis, and the two kinds of task it lets a worker skip.

:class:`WorkerRedisBackend` is Dramatiq's ``RedisBackend`` (same keys, same format: the
API reads it unchanged) on :func:`recsys.kv.redis_client`, plus:

* **An answered marker.** Storing a result also sets ``<result key>:answered`` (in the
  same transaction, so no extra round trip) for :data:`ANSWERED_TTL` seconds. The API
  pops the result of a request it answers within its HTTP call (``BRPOP``), so the
  result key alone cannot tell that a task was answered; the marker outlives it.
* **No traceback per task while Redis is down.** A result that cannot be stored is
  dropped: the API could not read it either and has answered its client 503. The first
  failure of an outage logs one WARNING, the end of the outage one INFO with how many
  results were lost and how many tasks were skipped (:class:`Outage`; an outage ends at
  the first success at least :data:`OUTAGE_SETTLE` seconds after it began, so the
  connections that die one after the other at its start make one outage, not several).
  Without this, Dramatiq's broker logs a CRITICAL traceback for every task.

:class:`ResultGuard` (a middleware, before every other ``before_process_message`` hook
but Dramatiq's own) skips a task of an actor that stores its result, before its engine
is prepared, when:

* **the message is a redelivery whose result is stored already**: a connection to
  RabbitMQ closed between the result's store and the message's ack
  (:mod:`recsys_workers.reconnect`), and RabbitMQ delivered the message again. Running
  it again would store a second copy of the result nobody reads; one ``EXISTS`` (on
  redeliveries only) tells, and the task is acked without running;
* **Redis is down** (a store failed, and a ``PING`` still fails: a refused connection
  fails in milliseconds): its result could not be stored. The PING is made only during
  an outage, so a task that arrives just after Redis is back runs.

A skipped task stores nothing (Dramatiq's ``Results`` would store ``None`` in place of
a skipped task's result, which a client polling the task would read as its answer), and
the worker's per-message "was skipped" warning is left out of the log for these tasks.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.middleware import SkipMessage
from dramatiq.results.backends import RedisBackend

__all__ = ["ANSWERED_SUFFIX", "ANSWERED_TTL", "OUTAGE_SETTLE", "Outage", "ResultGuard", "WorkerRedisBackend"]

logger = logging.getLogger(__name__)

#: Seconds the answered marker of a stored result is kept (at most the result's own ttl):
#: long enough for a redelivery after a reconnect; a later one is just run again.
ANSWERED_TTL = 120
#: Suffix of the answered marker's key (after the result's key).
ANSWERED_SUFFIX = ":answered"
#: An outage ends at the first success at least this many seconds after it began.
OUTAGE_SETTLE = 1.0
#: The logger of Dramatiq's worker threads, which logs "Message %s was skipped." per skip.
WORKER_THREAD_LOGGER = "dramatiq.worker.WorkerThread"


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)


class Outage:
    """Whether Redis is known to be unreachable, since when, and what it cost; logs the
    start and the end of each outage once. Thread-safe."""

    def __init__(self, where: str, *, clock: Any = time.monotonic) -> None:
        self.where = where
        self.since: float | None = None
        self.lost = 0  # results that could not be stored
        self.skipped = 0  # tasks skipped without running
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.since is not None

    def began(self, exc: BaseException) -> None:
        with self._lock:
            if self.since is not None:
                return
            self.since = self._clock()
            self.lost = self.skipped = 0
        logger.warning(
            "Redis at %s is unreachable (%s: %s): task results cannot be stored, so they are dropped and tasks "
            "that store a result are skipped until it is back (the API answers their clients 503); "
            "logged once per outage", self.where, type(exc).__name__, exc,
        )

    def ended(self) -> None:
        """Redis answered: the outage is over, unless it began under OUTAGE_SETTLE s ago."""
        if self.since is None:  # the common case: no lock
            return
        with self._lock:
            if self.since is None or self._clock() - self.since < OUTAGE_SETTLE:
                return
            seconds, self.since = self._clock() - self.since, None
            lost, skipped = self.lost, self.skipped
        logger.info("Redis at %s is reachable again after %.1f s: %d results were lost, %d tasks were skipped",
                    self.where, seconds, lost, skipped)

    def count(self, *, lost: int = 0, skipped: int = 0) -> None:
        with self._lock:
            self.lost += lost
            self.skipped += skipped


class WorkerRedisBackend(RedisBackend):  # type: ignore[misc]
    """Dramatiq's RedisBackend with answered markers and outage handling (module docstring)."""

    def __init__(self, *, client: Any, where: str, answered_ttl: int = ANSWERED_TTL,
                 clock: Any = time.monotonic) -> None:
        super().__init__(client=client)
        self.answered_ttl_ms = answered_ttl * 1000
        self.outage = Outage(where, clock=clock)
        self._errors = _redis_errors()
        self._skipped: set[str] = set()
        self._lock = threading.Lock()

    def _store(self, message_key: str, result: Any, ttl: int) -> None:
        with self._lock:
            if message_key in self._skipped:  # ResultGuard skipped this task: nothing to store
                self._skipped.discard(message_key)
                return
        try:
            with self.client.pipeline() as pipe:
                pipe.delete(message_key)
                pipe.lpush(message_key, self.encoder.encode(result))
                pipe.pexpire(message_key, ttl)
                pipe.set(message_key + ANSWERED_SUFFIX, b"1", px=max(1, min(ttl, self.answered_ttl_ms)))
                pipe.execute()
        except self._errors as exc:
            self.outage.began(exc)
            self.outage.count(lost=1)
            return
        self.outage.ended()

    def answered(self, message: Any) -> bool:
        """Whether a result of ``message`` was stored (and may have been read since).
        Raises what redis-py raises when Redis is unreachable."""
        key = self.build_message_key(message)
        return bool(self.client.exists(key, key + ANSWERED_SUFFIX))

    def reachable(self) -> bool:
        """PING Redis; ends the outage when it answers."""
        try:
            self.client.ping()
        except self._errors:
            return False
        self.outage.ended()
        return True

    def skip(self, message: Any) -> None:
        """Store nothing for ``message`` when Dramatiq's Results middleware stores the
        ``None`` of a skipped task."""
        with self._lock:
            self._skipped.add(self.build_message_key(message))

    def skipping(self, message: Any) -> bool:
        with self._lock:
            return self.build_message_key(message) in self._skipped


class ResultGuard(Middleware):
    """Skips a task whose result is stored already (a redelivery) or cannot be stored
    (Redis down); see the module docstring."""

    def __init__(self, backend: WorkerRedisBackend) -> None:
        self.backend = backend
        self._filter = _QuietSkips(backend)
        worker_log = logging.getLogger(WORKER_THREAD_LOGGER)
        if not any(isinstance(f, _QuietSkips) and f.backend is backend for f in worker_log.filters):
            worker_log.addFilter(self._filter)

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if not self._stores_results(broker, message):
            return
        backend = self.backend
        if backend.outage.active and not backend.reachable():
            backend.outage.count(skipped=1)
            self._skip(message, "Redis is unreachable")
        if getattr(message, "redelivered", False) is True:
            try:
                answered = backend.answered(message)
            except backend._errors as exc:
                backend.outage.began(exc)
                backend.outage.count(skipped=1)
                self._skip(message, "Redis is unreachable")
            if answered:
                logger.info("message %s (%s) was redelivered after its result was stored: not run again",
                            message.message_id, message.actor_name)
                self._skip(message, "its result is stored already")

    def _skip(self, message: Any, why: str) -> None:
        self.backend.skip(message)
        raise SkipMessage(f"message {message.message_id} skipped: {why}")

    @staticmethod
    def _stores_results(broker: Broker, message: Any) -> bool:
        actor = broker.actors.get(message.actor_name)
        if actor is None:
            return False
        return bool(message.options.get("store_results", actor.options.get("store_results", False)))


class _QuietSkips(logging.Filter):
    """Leaves out Dramatiq's "Message %s was skipped." for the tasks a ResultGuard skipped
    (they are counted and logged once per outage, or once each at INFO)."""

    def __init__(self, backend: WorkerRedisBackend) -> None:
        super().__init__()
        self.backend = backend

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "Message %s was skipped." or not isinstance(record.args, tuple) or not record.args:
            return True
        try:
            return not self.backend.skipping(record.args[0])
        except Exception:  # not a message after all: keep the line
            return True
