"""The API's RabbitMQ broker: Dramatiq's, plus knowing when a publish may have been lost.

Dramatiq's ``RabbitmqBroker`` keeps one connection per thread. A message published on a
connection that RabbitMQ (or the network) has just closed can be lost without an error:
pika writes it into the socket and returns before it reads the close. Publisher confirms
(``confirm_delivery=True``) would catch that, at the price of a round trip *and* the
broker's fsync of every persistent message before each publish returns: measured on the
no-op round trip, +0.5 to 1 ms per request at concurrency 1 and about a quarter less
throughput at concurrency 8 (docs/benchmarks.md, *faults*). :class:`TaskBroker` gets the
same guarantee for the API's requests at no cost while nothing fails:

* before a publish, the thread's connection is polled (no wait): a close that has
  arrived is seen, and the message goes out on a new connection instead;
* :meth:`TaskBroker.publish_lost`, asked by :meth:`recsys_api.tasks.TaskClient.wait`
  when no result came within half a second, tells whether the connection that carried this
  thread's last publish has closed since. A lost publish implies that (TCP does not
  drop what a live connection carries), so the waiting request publishes its message
  again, and is answered about half a second late instead of timing out after
  ``RECSYS_REQUEST_TIMEOUT``. If the first copy did arrive, the task runs twice under
  one id: the second result is stored, unread, until it expires.

Only the thread that owns a connection touches it (pika is not thread-safe): the API's
request thread publishes and waits. pika's own ERROR lines for a closed socket (with a
traceback for a broken pipe) are silenced (:data:`QUIET_LOGGERS`, by
:func:`recsys_api.services.rabbitmq_broker`): the close is logged
here, once per connection, at INFO, and what it breaks reaches the client as a 503.
"""

from __future__ import annotations

import logging
from typing import Any

import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.message import Message

__all__ = ["QUIET_LOGGERS", "TaskBroker"]

logger = logging.getLogger(__name__)

#: pika's loggers that report a closed socket at ERROR.
QUIET_LOGGERS = ("pika.adapters.base_connection", "pika.adapters.utils.io_services_utils",
                 "pika.adapters.blocking_connection")

_CLOSED = (pika.exceptions.AMQPError, OSError, AssertionError)


class TaskBroker(RabbitmqBroker):
    """Dramatiq's RabbitmqBroker that notices closed connections (see the module docstring)."""

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        if not self._connection_alive():
            logger.info("this thread's RabbitMQ connection has closed: task %s goes out on a new one",
                        message.message_id)
            self._drop_connection()
        return super().enqueue(message, delay=delay)

    def publish_lost(self) -> bool:
        """Whether this thread's connection, which carried its last publish, has closed
        since (so that publish may have been lost). A closed connection is dropped: the
        next publish opens a new one."""
        if getattr(self.state, "connection", None) is None:
            return True  # dropped after an error since the publish
        if self._connection_alive():
            return False
        self._drop_connection()
        return True

    def _connection_alive(self) -> bool:
        connection = getattr(self.state, "connection", None)
        if connection is None:
            return True  # none yet: enqueue opens one
        if not connection.is_open:
            return False
        try:
            connection.process_data_events(time_limit=0)  # reads a close that has arrived
        except _CLOSED:
            return False
        return bool(connection.is_open)

    def _drop_connection(self) -> None:
        try:
            del self.connection
        except Exception:  # closing a dead connection: nothing left to release
            logger.debug("dropping a closed RabbitMQ connection failed", exc_info=True)
            for name in ("channel", "connection"):
                if hasattr(self.state, name):
                    delattr(self.state, name)
