"""Broadcasts over RabbitMQ: a fanout exchange, one exclusive queue per worker process.

Dramatiq has no fanout: ``RabbitmqBroker.declare_queue`` makes a durable queue plus
``.DQ`` (delays) and ``.XQ`` (dead letters) companions, which for a per-process
queue would leave three garbage queues behind every worker that ever ran.
:class:`FanoutRabbitmqBroker` therefore treats one queue name, the broadcast queue
(``RECSYS_BROADCAST_EXCHANGE``), differently:

* declaring it records it (so a Worker starts a consumer for it, and ``--queues``
  can name it) but creates nothing in RabbitMQ and no delay queue;
* consuming it returns a :class:`BroadcastConsumer`, which on its own connection
  declares the fanout exchange, declares an **exclusive, auto-delete** queue named
  ``<exchange>.<host>.<pid>.<random>``, binds it and consumes it. RabbitMQ deletes an
  exclusive queue when the connection that declared it closes, so the queue goes
  away with its process, ``kill -9`` included, and nothing piles up;
* after each bind (the first, and every reconnect) it calls the broker's bind
  listeners: the worker uses that to ask the API for its current engine, so a
  worker that was cut off during a rollout catches up;
* sending a message to it (``engine_updated.send(...)``) publishes to the fanout
  exchange: every worker process receives a copy.

Every other queue is consumed by :class:`~recsys_workers.reconnect.ConnectionBoundConsumer`,
and every consumer, the broadcast one included, reconnects after a short delay that
grows while RabbitMQ stays unreachable (:class:`~recsys_workers.reconnect.Backoff`); see
:mod:`recsys_workers.reconnect` for what happens to the deliveries of a closed connection.

Publishing and the exchange's declaration (``fanout``, durable, not auto-delete,
declared by whichever side comes first) are the API's one publisher,
:func:`recsys_api.broadcast.publish_broadcast` and
:func:`recsys_api.broadcast.declare_exchange` (a falcon-free module); this module is
the consuming side.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pika
import pika.exceptions
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message

from recsys_api.broadcast import declare_exchange, publish_broadcast
from recsys_workers.reconnect import Backoff, ConnectionBoundConsumer, LostAcks

__all__ = ["BroadcastConsumer", "FanoutRabbitmqBroker", "broadcast_queue_name"]

logger = logging.getLogger(__name__)

_AMQP_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

#: Seconds a closing consumer waits for its pending acks to reach RabbitMQ.
CLOSE_FLUSH_TIMEOUT = 5.0


def broadcast_queue_name(exchange: str, host: str | None = None, pid: int | None = None) -> str:
    """``<exchange>.<host>.<pid>.<random>``: unique, and it tells an operator reading
    ``rabbitmqctl list_queues`` which worker process a broadcast queue belongs to."""
    host = _UNSAFE.sub("-", host if host is not None else socket.gethostname())[:100]
    return f"{exchange}.{host}.{pid if pid is not None else os.getpid()}.{secrets.token_hex(3)}"


def _closed(exc: BaseException) -> ConnectionClosed:
    """Dramatiq's error for a lost connection (consumer threads restart on it)."""
    return ConnectionClosed(exc)  # type: ignore[no-untyped-call]


class FanoutRabbitmqBroker(RabbitmqBroker):
    """A RabbitmqBroker whose queue ``broadcast_queue`` is a per-process fanout subscription.

    Every other queue behaves exactly as in Dramatiq. ``bind_listeners`` are called
    (in the consumer thread; keep them short) after each bind of the broadcast queue.
    """

    def __init__(self, *, url: str, broadcast_queue: str, **kwargs: Any) -> None:
        super().__init__(url=url, **kwargs)
        self.broadcast_queue = broadcast_queue
        self.broadcast_url = url
        self.broadcast_parameters = pika.URLParameters(url)
        self.bind_listeners: list[Callable[[], None]] = []
        self.backoff = Backoff()

    @property
    def consumer_class(self) -> type[ConnectionBoundConsumer]:
        return ConnectionBoundConsumer

    def declare_queue(self, queue_name: str, *, ensure: bool = False) -> None:
        if queue_name != self.broadcast_queue:
            super().declare_queue(queue_name, ensure=ensure)
            return
        # Recorded only: the queue is declared per consumer, exclusive, by BroadcastConsumer.
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues.add(queue_name)
            self.emit_after("declare_queue", queue_name)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        self.backoff.sleep(queue_name)  # nothing after a connection that worked
        try:
            consumer = self._consume(queue_name, prefetch, timeout)
        except ConnectionClosed:
            self.backoff.failed(queue_name)
            raise
        self.backoff.succeeded(queue_name)
        return consumer

    def _consume(self, queue_name: str, prefetch: int, timeout: int) -> Consumer:
        if queue_name != self.broadcast_queue:
            return super().consume(queue_name, prefetch, timeout)
        return BroadcastConsumer(
            self.broadcast_parameters,
            exchange=self.broadcast_queue,
            prefetch=prefetch,
            timeout=timeout,
            on_bound=self._notify_bound,
        )

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        if message.queue_name != self.broadcast_queue:
            return super().enqueue(message, delay=delay)
        if delay is not None:
            raise ValueError(f"a broadcast ({message.actor_name}) cannot be delayed")
        self.emit_before("enqueue", message, delay)
        try:
            publish_broadcast(self.broadcast_url, self.broadcast_queue, message)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise _closed(exc) from None
        self.emit_after("enqueue", message, delay)
        return message

    def _notify_bound(self) -> None:
        for listener in list(self.bind_listeners):
            try:
                listener()
            except Exception:
                logger.exception("a broadcast bind listener (%r) failed", listener)


class _Delivery(MessageProxy):
    """A broadcast message, its delivery tag and the consumer whose channel delivered it."""

    def __init__(self, message: Message[Any], tag: int, consumer: BroadcastConsumer) -> None:
        super().__init__(message)
        self.tag = tag
        self.delivered_by = consumer


class BroadcastConsumer(Consumer):
    """Consumes this process's exclusive queue bound to the fanout exchange.

    Messages are handed to Dramatiq with ``queue_name`` = the exchange's name (the
    broadcast actor's queue), whatever the publisher wrote. Acks and nacks come from
    worker threads and are passed to the connection's own thread (pika is not
    thread-safe); one for a delivery of a closed connection is dropped (logged once:
    :class:`~recsys_workers.reconnect.LostAcks`), never raised. A nacked broadcast is
    dropped: there is no dead-letter queue.
    """

    def __init__(
        self,
        parameters: pika.ConnectionParameters,
        *,
        exchange: str,
        prefetch: int,
        timeout: int,
        on_bound: Callable[[], None] = lambda: None,
    ) -> None:
        self.exchange = exchange
        self.queue = broadcast_queue_name(exchange)
        self.lost = LostAcks(self.queue)
        self.connection: Any = None
        try:
            self.connection = pika.BlockingConnection(parameters)
            self.channel = self.connection.channel()
            declare_exchange(self.channel, exchange)
            self.channel.queue_declare(queue=self.queue, durable=False, exclusive=True, auto_delete=True)
            self.channel.queue_bind(queue=self.queue, exchange=exchange)
            self.channel.basic_qos(prefetch_count=prefetch)
            self._deliveries = self.channel.consume(self.queue, exclusive=True, inactivity_timeout=timeout / 1000)
        except (*_AMQP_ERRORS, OSError) as exc:
            self._close_quietly()
            raise _closed(exc) from None
        logger.info("broadcast queue %s bound to fanout exchange %s", self.queue, exchange)
        on_bound()

    def __next__(self) -> MessageProxy | None:
        try:
            method, _properties, body = next(self._deliveries)
        except (*_AMQP_ERRORS, AssertionError, StopIteration) as exc:
            raise _closed(exc) from None
        if method is None:
            return None
        try:
            message = Message.decode(body)
        except DecodeError:
            logger.exception("dropping an undecodable broadcast on %s (not a Dramatiq message)", self.queue)
            try:  # this is the connection's own thread
                self.channel.basic_nack(method.delivery_tag, requeue=False)
            except (*_AMQP_ERRORS, OSError) as exc:
                raise _closed(exc) from None
            return None
        if message.queue_name != self.exchange:
            message = message.copy(queue_name=self.exchange)
        return _Delivery(message, method.delivery_tag, self)

    def ack(self, message: MessageProxy) -> None:
        self._settle(message, "ack", lambda tag: partial(self.channel.basic_ack, tag))

    def nack(self, message: MessageProxy) -> None:
        self._settle(message, "nack", lambda tag: partial(self.channel.basic_nack, tag, requeue=False))

    def close(self) -> None:
        if self.connection is None or not self.connection.is_open:
            return
        flushed = threading.Event()
        try:
            self.connection.add_callback_threadsafe(flushed.set)
            deadline = time.monotonic() + CLOSE_FLUSH_TIMEOUT
            while not flushed.is_set() and time.monotonic() < deadline:
                self.connection.process_data_events(time_limit=0.05)
        except (*_AMQP_ERRORS, OSError):
            logger.debug("broadcast consumer %s: connection lost while flushing acks", self.queue)
        self._close_quietly()

    def _settle(self, message: MessageProxy, action: str, call: Callable[[int], Callable[[], None]]) -> None:
        """Send an ack or nack to this consumer's channel; drop it (logged once) when the
        message came from a previous connection, or this one closed: its queue is gone
        with it, and so is the delivery."""
        owner = getattr(message, "delivered_by", None)
        if owner is not self:
            (owner.lost if isinstance(owner, BroadcastConsumer) else self.lost).note(message, action)
            return
        try:
            self.connection.add_callback_threadsafe(call(message.tag))
        except (*_AMQP_ERRORS, OSError):
            self.lost.note(message, action)

    def _close_quietly(self) -> None:
        if self.connection is not None and self.connection.is_open:
            try:
                self.connection.close()
            except (*_AMQP_ERRORS, OSError):
                pass
