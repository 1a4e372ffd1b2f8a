"""A fake pika BlockingConnection for the unit tests of consumers and publishers:
deliveries are queued by the test, callbacks passed with add_callback_threadsafe run when
the test says so, a dropped connection refuses callbacks as pika does, and a connection
the peer closed keeps looking open until it reads (as pika's does), silently losing what
is published meanwhile."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pika.exceptions
from dramatiq.message import Message


@dataclass
class Method:
    delivery_tag: int
    redelivered: bool = False


class FakeChannel:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.acked: list[int] = []
        self.nacked: list[int] = []
        self.deliveries: deque[tuple[Method, Any, bytes]] = deque()
        self.published: list[bytes] = []
        self.lost: list[bytes] = []  # published after the peer closed, before pika noticed
        self._tag = 0

    def deliver(self, message: Message[Any], *, redelivered: bool = False) -> int:
        """Queue a delivery of ``message``; returns its tag (1, 2, ... on each channel)."""
        self._tag += 1
        self.deliveries.append((Method(self._tag, redelivered), None, message.encode()))
        return self._tag

    def consume(self, queue: str, **_: Any) -> Iterator[tuple[Any, Any, Any]]:
        while True:
            if not self.connection.is_open:
                raise pika.exceptions.StreamLostError("Transport indicated EOF")
            yield self.deliveries.popleft() if self.deliveries else (None, None, None)

    def basic_ack(self, tag: int) -> None:
        self.acked.append(tag)

    def basic_nack(self, tag: int, requeue: bool = True) -> None:
        self.nacked.append(tag)

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, **_: Any) -> None:
        if not self.connection.is_open:
            raise pika.exceptions.StreamLostError("Transport indicated EOF")
        (self.lost if self.connection.peer_closed else self.published).append(body)

    def basic_qos(self, **_: Any) -> None: ...

    def exchange_declare(self, **_: Any) -> None: ...

    def queue_declare(self, **_: Any) -> None: ...

    def queue_bind(self, **_: Any) -> None: ...

    def close(self) -> None: ...


class FakeConnection:
    """Records every connection made, in order (``FakeConnection.made``)."""

    made: list[FakeConnection] = []

    def __init__(self, parameters: Any = None, **_: Any) -> None:
        self.is_open = True
        self.peer_closed = False
        self.pending: list[Callable[[], None]] = []
        self.channels: list[FakeChannel] = []
        FakeConnection.made.append(self)

    @property
    def is_closed(self) -> bool:
        return not self.is_open

    def channel(self) -> FakeChannel:
        channel = FakeChannel(self)
        self.channels.append(channel)
        return channel

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        if not self.is_open:
            raise pika.exceptions.ConnectionWrongStateError(
                "BlockingConnection.add_callback_threadsafe() called on closed or closing connection."
            )
        self.pending.append(callback)

    def run_callbacks(self) -> None:
        pending, self.pending = self.pending, []
        for callback in pending:
            callback()

    def process_data_events(self, time_limit: float = 0) -> None:
        if self.peer_closed and self.is_open:  # reading finds the close
            self.is_open = False
            raise pika.exceptions.StreamLostError("Transport indicated EOF")
        self.run_callbacks()

    def sleep(self, seconds: float) -> None:
        self.run_callbacks()

    def drop(self) -> None:
        """The server closed the connection, and pika has seen it."""
        self.is_open = False
        self.pending.clear()

    def close_by_peer(self) -> None:
        """The server closed the connection; pika sees it at its next read."""
        self.peer_closed = True

    def close(self) -> None:
        if not self.is_open:
            raise pika.exceptions.ConnectionWrongStateError("already closed")
        self.run_callbacks()
        self.is_open = False
