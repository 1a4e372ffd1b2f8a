"""Sending actor messages by name, and reading their results.

The API does not import the workers: it builds a Dramatiq :class:`~dramatiq.Message`
for an actor name (see :mod:`recsys.protocol`) and enqueues it on the broker, then
waits on the result backend directly. Every task whose id the API hands out (a 202, a
504, a build) is recorded (:class:`~recsys.cluster.TaskRecords`, kept as long as
results) before the id leaves the API, so that ``GET /v1/tasks/{id}`` tells an unknown
or expired id from a pending one.

Broker and backend failures become :class:`~recsys.errors.Unavailable` (503). With a
:class:`~recsys_api.circuit.Circuit` (a deployment's Redis), a task is not sent while
Redis is known to be down: nobody could read its result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import dramatiq
from dramatiq.results import ResultFailure, ResultMissing, ResultTimeout

from recsys import protocol
from recsys.cluster import TASK_PREFIX, TaskRecords
from recsys.errors import InternalError, Unavailable, WaitTimeout
from recsys_api.circuit import Circuit

__all__ = ["TaskClient", "TaskStatus", "broker_errors", "redis_errors", "results_circuit"]

logger = logging.getLogger(__name__)

#: Longest task id looked up; anything longer cannot be one of ours (uuid4 strings).
MAX_TASK_ID = 128
#: Milliseconds a request waits for its result before it asks whether its publish was
#: lost (a broker with ``publish_lost``: :class:`recsys_api.publisher.TaskBroker`); a whole
#: second for a backend without ``take_result``, whose waits count whole seconds.
RECHECK_AFTER_MS = 500


def broker_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a broker raises when RabbitMQ is unreachable (or a stub has no queue)."""
    import pika.exceptions
    from dramatiq.errors import BrokerConnectionError, QueueNotFound

    return (BrokerConnectionError, QueueNotFound, pika.exceptions.AMQPError, OSError)


def redis_errors() -> tuple[type[BaseException], ...]:
    """Exceptions redis-py raises when Redis is unreachable."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)


@dataclass(frozen=True)
class TaskStatus:
    """What ``GET /v1/tasks/{id}`` answers."""

    task_id: str
    status: str  # pending | succeeded | failed
    result: Any = None
    error: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"task_id": self.task_id, "status": self.status}
        if self.status == "succeeded":
            body["result"] = self.result
        elif self.status == "failed":
            body["error"] = self.error
        return body


def results_circuit(backend: dramatiq.results.ResultBackend, results_url: str | None) -> Circuit | None:
    """A circuit on ``backend``'s Redis (its ``ping``), or None for a backend without one
    (the embedded mode's in-memory results)."""
    ping = getattr(backend, "ping", None)
    if ping is None:
        return None
    return Circuit(ping, redis_errors(), where=_where(results_url, "the result store"))


def _where(url: str | None, default: str) -> str:
    """``host:port/vhost`` of a URL, without its credentials, for error messages."""
    parts = urlsplit(url or "")
    if not parts.hostname:
        return default
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname}{port}{parts.path}"


class TaskClient:
    """Sends messages to actors by name, records them, and reads their results."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        backend: dramatiq.results.ResultBackend,
        records: TaskRecords,
        *,
        result_ttl: int,
        broker_url: str | None = None,
        results_url: str | None = None,
        circuit: Circuit | None = None,
    ) -> None:
        self.broker = broker
        self.backend = backend
        self.records = records
        self.result_ttl = result_ttl
        self._broker_where = _where(broker_url, "the broker")
        self._results_where = _where(results_url, "the result store")
        self._broker_errors = broker_errors()
        self._redis_errors = redis_errors()
        self.circuit = circuit

    def message(self, actor: str, queue: str, kwargs: dict[str, Any] | None = None) -> dramatiq.Message[Any]:
        """A new message for ``actor`` on ``queue`` (not sent)."""
        return dramatiq.Message(queue_name=queue, actor_name=actor, args=(), kwargs=kwargs or {}, options={})

    def send(self, message: dramatiq.Message[Any], *, record: bool = True) -> dramatiq.Message[Any]:
        """Record the task (unless ``record`` is False), then enqueue it. Raises Unavailable
        when Redis or RabbitMQ cannot be reached (the record is dropped again if the
        enqueue fails).

        ``record=False`` is for a task whose id is not handed out unless its wait times
        out: the caller records it then (:meth:`record`), before the id leaves the API.
        That saves a Redis round trip on every answered request.

        Raises Unavailable without sending anything while the circuit says Redis is down.
        """
        if self.circuit is not None:
            self.circuit.check(f"task {message.actor_name!r}")
        if record:
            self.record(message)
        try:
            self._enqueue(message)
        except Unavailable:
            if record:
                self._forget(message.message_id)
            raise
        return message

    def _enqueue(self, message: dramatiq.Message[Any]) -> None:
        try:
            self.broker.enqueue(message)
        except self._broker_errors as exc:
            raise Unavailable(
                f"RabbitMQ at {self._broker_where} is unreachable, so task {message.actor_name!r} was not sent "
                f"({type(exc).__name__}: {exc}); retry in a few seconds"
            ) from exc

    def record(self, message: dramatiq.Message[Any]) -> None:
        """Remember that this API started the task, as long as its result is kept."""
        try:
            self.records.record(message.message_id, actor=message.actor_name, queue=message.queue_name)
        except Unavailable as exc:
            self._redis_failed(exc)
            raise
        self._redis_answered()

    def _redis_answered(self) -> None:
        if self.circuit is not None:
            self.circuit.succeeded()

    def _redis_failed(self, exc: BaseException) -> None:
        if self.circuit is not None:
            self.circuit.failed(exc)

    def _forget(self, task_id: str) -> None:
        try:
            self.records.kv.delete(TASK_PREFIX + task_id)
        except Unavailable:
            logger.warning("could not drop the record of unsent task %s", task_id)

    def wait(self, message: dramatiq.Message[Any], seconds: int, *, take: bool = False) -> Any:
        """Block until the task's result arrives (no polling on Redis), at most ``seconds``.

        With ``take``, the result is removed as it is read (when the backend can: see
        recsys_api.redis_results): for a task whose id is never handed out, so that answered
        results do not pile up. Returns the result; a task that raised instead of
        returning an error result gives ``{"error": {"code": "internal", ...}}``.
        Raises WaitTimeout or Unavailable.

        With a broker that can tell (``publish_lost``), a wait that got nothing within
        ``RECHECK_AFTER_MS`` asks whether the connection that carried the message has
        closed since; if so the message may be lost, and it is published again (same id).
        """
        publish_lost = getattr(self.broker, "publish_lost", None)
        taking = take and hasattr(self.backend, "take_result")
        first = RECHECK_AFTER_MS if taking else 1000
        total = seconds * 1000
        if publish_lost is None or total <= first:
            return self._wait(message, total, take=take, seconds=seconds)
        try:
            return self._wait(message, first, take=take, seconds=seconds)
        except WaitTimeout:
            if publish_lost():
                logger.info("task %s (%s): its RabbitMQ connection closed after it was sent, so it may be lost: "
                            "sending it again", message.message_id, message.actor_name)
                self._enqueue(message)
        return self._wait(message, total - first, take=take, seconds=seconds)

    def _wait(self, message: dramatiq.Message[Any], ms: int, *, take: bool, seconds: int) -> Any:
        """One blocking wait of ``ms``; a timeout raises WaitTimeout for the whole ``seconds``."""
        take_result = getattr(self.backend, "take_result", None) if take else None
        try:
            if take_result is not None:
                result = take_result(message, timeout=ms)
            else:
                result = message.get_result(backend=self.backend, block=True, timeout=ms)
        except ResultTimeout:
            self._redis_answered()
            raise WaitTimeout(message.message_id, seconds) from None
        except ResultFailure as exc:
            self._redis_answered()
            return _failure_result(message, exc)
        except self._redis_errors as exc:
            self._redis_failed(exc)
            raise self._results_down(exc) from exc
        self._redis_answered()
        return result

    def status(self, task_id: str) -> TaskStatus | None:
        """The task's status, or None when this API never started it or it expired."""
        if not task_id or len(task_id) > MAX_TASK_ID:
            return None
        try:
            record = self.records.get(task_id)
        except Unavailable as exc:
            self._redis_failed(exc)
            raise
        if record is None:
            return None
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=str(record.get("queue", "")), actor_name=str(record.get("actor", "")),
            args=(), kwargs={}, options={}, message_id=task_id,
        )
        try:
            result = message.get_result(backend=self.backend, block=False)
        except ResultMissing:
            return TaskStatus(task_id, "pending")
        except ResultFailure as exc:
            result = _failure_result(message, exc)
        except self._redis_errors as exc:
            self._redis_failed(exc)
            raise self._results_down(exc) from exc
        self._redis_answered()
        error = protocol.error_of(result)
        if error is not None:
            return TaskStatus(task_id, "failed", error=error)
        return TaskStatus(task_id, "succeeded", result=result)

    def _results_down(self, exc: BaseException) -> Unavailable:
        return Unavailable(
            f"Redis at {self._results_where} is unreachable, so the task's result cannot be read "
            f"({type(exc).__name__}: {exc}); retry in a few seconds"
        )


def _failure_result(message: dramatiq.Message[Any], exc: ResultFailure) -> dict[str, Any]:
    """An actor that raised (instead of returning an error result) is an internal error."""
    logger.error("task %s (%s) raised %s: %s", message.message_id, message.actor_name, exc.orig_exc_type,
                 exc.orig_exc_msg)
    return protocol.error_result(
        InternalError(f"task {message.actor_name!r} failed with {exc.orig_exc_type}: {exc.orig_exc_msg}")
    )
