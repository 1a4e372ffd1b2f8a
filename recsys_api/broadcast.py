"""Publishing ``engine_updated`` to every worker process (see :mod:`recsys.protocol`).

The message is a Dramatiq message (``Message.encode()``) for the actor
``engine_updated`` with ``queue_name`` = the broadcast exchange's name and kwargs
``{"generation", "version", "created_at", "manifest_sha256"}`` (the version's identity:
the sha256 of its manifest's exact bytes, which workers fetch with
``GET /v1/engine/files/{manifest_sha256}``).

This module holds the project's one broadcast publisher, :func:`publish_broadcast`,
and the one declaration of the fanout exchange, :func:`declare_exchange`; it imports
no falcon, so the workers use both too (``recsys_workers.fanout``: the consuming side,
and ``engine_updated.send()`` on a worker's broker).

* The exchange ``RECSYS_BROADCAST_EXCHANGE`` is declared actively, ``fanout``,
  durable, not auto-delete, by whichever side comes first: the API when it publishes,
  a worker process when it binds its queue. The same declaration on both sides, so
  neither fails on the other's (RabbitMQ refuses a redeclaration with other flags).
  A broadcast published while no worker is bound is dropped by RabbitMQ; workers catch
  up by asking the API when they bind.
* :func:`publish_broadcast` publishes on a short-lived connection with bounded
  timeouts (:func:`pika_parameters`; broadcasts are rare and no connection is cached,
  so none goes stale), routing key ``""``, not persistent.
* :class:`PikaBroadcaster` is the API's :class:`Broadcaster` on it;
  :class:`BrokerBroadcaster` (embedded mode, a StubBroker) enqueues the same message
  on the broker, on a queue named after the exchange.

A failed broadcast is logged, never raised, by the API: the version is installed
either way, and workers also ask the API for its current engine periodically.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import dramatiq

from recsys import protocol
from recsys_api.archive_store import StoredVersion

__all__ = [
    "Broadcaster",
    "BrokerBroadcaster",
    "PikaBroadcaster",
    "declare_exchange",
    "engine_updated_message",
    "pika_parameters",
    "publish_broadcast",
]

logger = logging.getLogger(__name__)

#: Seconds allowed to connect (TCP + AMQP handshake) and for each socket operation.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 2.0


class Broadcaster(Protocol):
    def publish(self, version: StoredVersion) -> bool:
        """Tell every worker that ``version`` is current; False (logged) when it failed."""
        ...


def engine_updated_message(version: StoredVersion, exchange: str) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=exchange,
        actor_name=protocol.ENGINE_UPDATED_ACTOR,
        args=(),
        kwargs={
            "generation": version.generation,
            "version": version.version,
            "created_at": version.manifest.created_at,
            "manifest_sha256": version.manifest_sha256,
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


def declare_exchange(channel: Any, exchange: str) -> None:
    """Declare the broadcast fanout exchange (durable, kept when unused): the one
    declaration, made by the API and by every worker process."""
    channel.exchange_declare(exchange=exchange, exchange_type="fanout", durable=True, auto_delete=False)


def publish_broadcast(url: str, exchange: str, message: dramatiq.Message[Any]) -> None:
    """Publish ``message`` to the fanout ``exchange`` of the RabbitMQ at ``url`` on a
    short-lived connection, declaring the exchange first. Raises what pika raises
    (``pika.exceptions.AMQPError``; ``AMQPConnectionError`` when RabbitMQ cannot be
    reached) or OSError."""
    import pika
    import pika.exceptions

    connection = pika.BlockingConnection(pika_parameters(url))
    try:
        channel = connection.channel()
        declare_exchange(channel, exchange)
        channel.basic_publish(
            exchange=exchange,
            routing_key="",
            body=message.encode(),
            properties=pika.BasicProperties(delivery_mode=1, content_type="application/json"),
        )
    finally:
        if connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                pass


class PikaBroadcaster:
    """Publishes to the fanout exchange on RabbitMQ (:func:`publish_broadcast`)."""

    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = exchange

    def publish(self, version: StoredVersion) -> bool:
        import pika.exceptions

        try:
            publish_broadcast(self.url, self.exchange, engine_updated_message(version, self.exchange))
        except (pika.exceptions.AMQPConnectionError, OSError) as exc:
            logger.warning(
                "could not broadcast engine_updated (generation %d): RabbitMQ is unreachable (%s: %s); "
                "workers will catch up when they next ask the API", version.generation, type(exc).__name__, exc,
            )
            return False
        except pika.exceptions.AMQPError as exc:
            logger.warning("broadcast of generation %d failed (%s: %s); workers will catch up when they next ask "
                           "the API", version.generation, type(exc).__name__, exc)
            return False
        logger.info("broadcast engine_updated: generation %d, version %s, manifest %s", version.generation,
                    version.version, version.manifest_sha256)
        return True


class BrokerBroadcaster:
    """Embedded mode: the same message enqueued on the (stub) broker."""

    def __init__(self, broker: dramatiq.Broker, exchange: str) -> None:
        self.broker = broker
        self.exchange = exchange

    def publish(self, version: StoredVersion) -> bool:
        message = engine_updated_message(version, self.exchange)
        try:
            self.broker.enqueue(message)
        except dramatiq.errors.QueueNotFound:
            logger.info("no %r queue on the broker: no worker is listening, nothing to broadcast", self.exchange)
            return False
        logger.info("broadcast engine_updated: generation %d, version %s, manifest %s", version.generation,
                    version.version, version.manifest_sha256)
        return True
