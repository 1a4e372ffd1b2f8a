"""Publishing ``engine_updated`` to every worker process (see :mod:`recsys.protocol`).

The message is a Dramatiq message (``Message.encode()``) for the actor
``engine_updated`` with ``queue_name`` = the broadcast exchange's name and kwargs
``{"generation", "version", "created_at", "sha256"}``.

* :class:`PikaBroadcaster` publishes it to the fanout exchange
  ``RECSYS_BROADCAST_EXCHANGE`` (routing key ``""``) on a short-lived connection with
  bounded timeouts (uploads are rare; no connection is cached, so none goes stale).
  It declares the exchange passively: the workers own its declaration, and when it
  does not exist yet no worker is listening, so there is nobody to tell.
* :class:`BrokerBroadcaster` (embedded mode, a StubBroker) enqueues the same message
  on the broker, on a queue named after the exchange.

A failed broadcast is logged, never raised: the archive is installed either way,
and workers also ask the API for its current engine periodically.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import dramatiq

from recsys import protocol
from recsys_api.archive_store import StoredArchive

__all__ = ["Broadcaster", "BrokerBroadcaster", "PikaBroadcaster", "engine_updated_message", "pika_parameters"]

logger = logging.getLogger(__name__)

#: Seconds allowed to connect (TCP + AMQP handshake) and for each socket operation.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 2.0


class Broadcaster(Protocol):
    def publish(self, archive: StoredArchive) -> bool:
        """Tell every worker that ``archive`` is current; False (logged) when it failed."""
        ...


def engine_updated_message(archive: StoredArchive, exchange: str) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=exchange,
        actor_name=protocol.ENGINE_UPDATED_ACTOR,
        args=(),
        kwargs={
            "generation": archive.generation,
            "version": archive.version,
            "created_at": archive.manifest.created_at,
            "sha256": archive.sha256,
        },
        options={},
    )


def pika_parameters(url: str, *, connect_timeout: float = CONNECT_TIMEOUT) -> Any:
    """pika connection parameters for ``url`` with bounded timeouts and a single
    connection attempt, unless the URL's query string sets them."""
    import pika

    params = pika.URLParameters(url)
    query = url.partition("?")[2]
    if "connection_attempts" not in query:
        params.connection_attempts = 1
    if "socket_timeout" not in query:
        params.socket_timeout = min(SOCKET_TIMEOUT, connect_timeout)
    if "stack_timeout" not in query:
        params.stack_timeout = connect_timeout
    if "blocked_connection_timeout" not in query:
        params.blocked_connection_timeout = 10.0
    return params


class PikaBroadcaster:
    """Publishes to the fanout exchange on RabbitMQ."""

    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = exchange

    def publish(self, archive: StoredArchive) -> bool:
        import pika
        import pika.exceptions

        message = engine_updated_message(archive, self.exchange)
        try:
            connection = pika.BlockingConnection(pika_parameters(self.url))
        except (pika.exceptions.AMQPError, OSError) as exc:
            logger.warning(
                "could not broadcast engine_updated (generation %d): RabbitMQ is unreachable (%s: %s); "
                "workers will catch up when they next ask the API", archive.generation, type(exc).__name__, exc,
            )
            return False
        try:
            channel = connection.channel()
            try:
                channel.exchange_declare(self.exchange, exchange_type="fanout", passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                logger.info("exchange %r does not exist yet: no worker is listening, nothing to broadcast",
                            self.exchange)
                return False
            channel.basic_publish(
                exchange=self.exchange,
                routing_key="",
                body=message.encode(),
                properties=pika.BasicProperties(delivery_mode=1, content_type="application/json"),
            )
            logger.info("broadcast engine_updated: generation %d, version %s", archive.generation, archive.version)
            return True
        except (pika.exceptions.AMQPError, OSError) as exc:
            logger.warning("broadcast of generation %d failed (%s: %s); workers will catch up when they next ask "
                           "the API", archive.generation, type(exc).__name__, exc)
            return False
        finally:
            if connection.is_open:
                try:
                    connection.close()
                except (pika.exceptions.AMQPError, OSError):
                    pass


class BrokerBroadcaster:
    """Embedded mode: the same message enqueued on the (stub) broker."""

    def __init__(self, broker: dramatiq.Broker, exchange: str) -> None:
        self.broker = broker
        self.exchange = exchange

    def publish(self, archive: StoredArchive) -> bool:
        message = engine_updated_message(archive, self.exchange)
        try:
            self.broker.enqueue(message)
        except dramatiq.errors.QueueNotFound:
            logger.info("no %r queue on the broker: no worker is listening, nothing to broadcast", self.exchange)
            return False
        logger.info("broadcast engine_updated: generation %d, version %s", archive.generation, archive.version)
        return True
