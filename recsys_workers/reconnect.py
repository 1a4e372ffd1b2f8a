"""What a worker does when a RabbitMQ connection closes (a node restart, a failover, a
network cut): reconnect at once, and never stall on the deliveries of the dead connection.

When a consumer's connection closes, Dramatiq's consumer thread logs the error, waits
``dramatiq.worker.CONSUMER_RESTART_DELAY_SECS`` and opens a new consumer, and RabbitMQ
puts every unacknowledged delivery of the closed connection back in its queue (marked
``redelivered``). Three things of Dramatiq's own made that a stall of 3 to 5 s:

* **The restart delay is 3 s**, read from the environment variable
  ``dramatiq_restart_delay`` when ``dramatiq.worker`` is imported, which the
  ``dramatiq`` command does before it imports ``recsys_workers``: setting the variable
  from here would be too late. :func:`set_restart_delay` sets the module's constants
  instead (:data:`RESTART_DELAY_MS`, 200 ms), unless the operator set
  ``dramatiq_restart_delay`` (their value stays). :class:`Backoff` spaces the attempts
  out while RabbitMQ stays unreachable (up to :data:`MAX_RESTART_DELAY`), so a long
  outage costs a few connection attempts and log lines a second, not dozens.
* **Acks go to the consumer thread's current consumer.** A message that was being
  processed when its connection closed is acknowledged, when it finishes, on the old
  consumer (its connection closed: ``ConnectionClosed``, on which Dramatiq's worker
  thread *sleeps 5 s* and retries) or on the new one, whose delivery tags start at 1
  again: "Failed to ack message: not in known tags", or worse, the tag of another
  delivery of the new channel, acked (or dead-lettered) in its place.
  :class:`ConnectionBoundConsumer` remembers which consumer delivered each message and
  drops an ack or nack that can no longer reach that consumer's channel: RabbitMQ has
  already put the message back, and its redelivered copy is run or, when its result is
  stored already, skipped (:mod:`recsys_workers.results`). It logs that once per closed
  connection (:class:`LostAcks`), never raises.
* The broadcast queue's consumer (:class:`recsys_workers.fanout.BroadcastConsumer`)
  follows the same rule with the same :class:`LostAcks`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import dramatiq.worker
from dramatiq.brokers.rabbitmq import _RabbitmqConsumer
from dramatiq.errors import ConnectionClosed

__all__ = [
    "MAX_RESTART_DELAY",
    "RESTART_DELAY_MS",
    "Backoff",
    "ConnectionBoundConsumer",
    "LostAcks",
    "set_restart_delay",
]

logger = logging.getLogger(__name__)

#: Milliseconds Dramatiq's consumer threads wait before reconnecting (Dramatiq: 3000).
RESTART_DELAY_MS = 200
#: Longest wait, in seconds, between two attempts while RabbitMQ stays unreachable.
MAX_RESTART_DELAY = 3.0
#: The environment variable Dramatiq reads its restart delay from; an operator's value wins.
RESTART_DELAY_ENV = "dramatiq_restart_delay"


def set_restart_delay(milliseconds: int = RESTART_DELAY_MS) -> float:
    """Make Dramatiq's consumer threads reconnect after ``milliseconds``, unless
    ``dramatiq_restart_delay`` is set in the environment. Returns the delay in force (s)."""
    if RESTART_DELAY_ENV not in os.environ:
        dramatiq.worker.CONSUMER_RESTART_DELAY = milliseconds
        dramatiq.worker.CONSUMER_RESTART_DELAY_SECS = milliseconds / 1000
    return float(dramatiq.worker.CONSUMER_RESTART_DELAY_SECS)


class Backoff:
    """Extra waits before reconnecting a queue's consumer after failed attempts: none
    after a connection that worked, then doubling from the restart delay up to
    ``longest`` seconds, so that the first reconnect after a drop is immediate and an
    outage is polled gently. Thread-safe (one consumer thread per queue)."""

    def __init__(self, longest: float = MAX_RESTART_DELAY) -> None:
        self.longest = longest
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def wait(self, queue: str) -> float:
        """Seconds to wait before the next attempt on ``queue`` (on top of Dramatiq's
        restart delay, which has just been slept)."""
        with self._lock:
            failures = self._failures.get(queue, 0)
        if failures == 0:
            return 0.0
        base = max(float(dramatiq.worker.CONSUMER_RESTART_DELAY_SECS), 0.05)
        longest: float = min(base * 2.0**failures, self.longest)
        return max(0.0, longest - base)

    def sleep(self, queue: str) -> None:
        seconds = self.wait(queue)
        if seconds > 0:
            time.sleep(seconds)

    def failed(self, queue: str) -> None:
        with self._lock:
            self._failures[queue] = self._failures.get(queue, 0) + 1

    def succeeded(self, queue: str) -> None:
        with self._lock:
            self._failures.pop(queue, None)


class LostAcks:
    """The acks and nacks of one consumer that its closed connection can no longer carry:
    counted, and logged once."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.count = 0
        self._lock = threading.Lock()

    def note(self, message: Any, action: str) -> None:
        with self._lock:
            self.count += 1
            first = self.count == 1
        if first:
            logger.info(
                "the RabbitMQ connection of the %s consumer closed while messages were in progress: "
                "their %ss are dropped (the first: message %s) and RabbitMQ redelivers them; a redelivered "
                "task whose result is already stored is not run again (logged once per connection)",
                self.queue, action, getattr(message, "message_id", "?"),
            )


class ConnectionBoundConsumer(_RabbitmqConsumer):
    """Dramatiq's RabbitMQ consumer whose acks and nacks reach only the channel that
    delivered the message (see the module docstring); they never raise."""

    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self.lost = LostAcks(queue_name)

    def __next__(self) -> Any:
        message = super().__next__()  # type: ignore[no-untyped-call]
        if message is not None:
            message.delivered_by = self
        return message

    def ack(self, message: Any) -> None:
        if self._deliverable(message, "ack"):
            self._settle(super().ack, message, "ack")

    def nack(self, message: Any) -> None:
        if self._deliverable(message, "nack"):
            self._settle(super().nack, message, "nack")

    def _deliverable(self, message: Any, action: str) -> bool:
        owner = getattr(message, "delivered_by", None)
        if owner is not self:
            # Delivered on a previous connection of this consumer thread (or never by us).
            lost = owner.lost if isinstance(owner, ConnectionBoundConsumer) else self.lost
            lost.note(message, action)
            return False
        if not self.connection.is_open:
            self.known_tags.discard(message._tag)
            self.lost.note(message, action)
            return False
        return True

    def _settle(self, send: Any, message: Any, action: str) -> None:
        try:
            send(message)
        except ConnectionClosed:  # closed meanwhile: RabbitMQ redelivers the message
            self.lost.note(message, action)
