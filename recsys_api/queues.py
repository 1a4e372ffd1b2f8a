"""Queue counts for the console: messages ready and unacknowledged per queue.

Where they come from, first that answers:

1. RabbitMQ's management API (``RECSYS_BROKER_MANAGEMENT_URL``; credentials from that
   URL, else from ``RECSYS_BROKER_URL``): ready, unacked and consumers of the request
   and build queues, their dead-letter queues (``.XQ``), and the broadcast queues (one
   per worker process, added up in one row);
2. AMQP (``RECSYS_BROKER_URL``): a passive declare of each queue gives its ready count
   and consumers (unacked is unknown);
3. the embedded mode's in-process broker: the messages waiting in each queue.

When none answers, the counts are ``"n/a"`` with the reason. A snapshot is kept for
:data:`CACHE_SECONDS`, so a console polling every two seconds costs one look-up per
API process, not one per page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from recsys.cluster import utcnow_iso
from recsys.config import Settings

__all__ = ["CACHE_SECONDS", "QueueCount", "QueueStats"]

logger = logging.getLogger(__name__)

#: Seconds a snapshot of the counts is reused.
CACHE_SECONDS = 2.0
#: Seconds one look-up (an HTTP call, an AMQP connection) may take.
TIMEOUT = 2.0
#: Dramatiq's dead-letter queue of a queue.
DEAD_LETTERS = ".XQ"


@dataclass(frozen=True)
class QueueCount:
    """One queue (or, for broadcasts, a group of them): None where unknown."""

    name: str
    ready: int | None
    unacked: int | None = None
    consumers: int | None = None
    queues: int = 1


def _vhost(broker_url: str) -> str:
    path = urlsplit(broker_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _credentials(management_url: str, broker_url: str | None) -> tuple[str, tuple[str, str] | None]:
    """The management URL without credentials, and the credentials to use."""
    parts = urlsplit(management_url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if parts.username:
        return base, (unquote(parts.username), unquote(parts.password or ""))
    if broker_url:
        broker = urlsplit(broker_url)
        if broker.username:
            return base, (unquote(broker.username), unquote(broker.password or ""))
    return base, None


class QueueStats:
    """The queue counts of the console (see the module doc). Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        broker: Any = None,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        s = self.settings
        return [s.request_queue, s.request_queue + DEAD_LETTERS, s.build_queue, s.build_queue + DEAD_LETTERS]

    def snapshot(self) -> dict[str, Any]:
        """``{"source", "error", "at", "queues": [QueueCount...]}``; ``source`` is
        ``management``, ``amqp``, ``embedded`` or ``n/a``."""
        with self._lock:
            cached = self._cached
            if cached is not None and self.clock() - cached[0] < self.cache_seconds:
                return cached[1]
            snapshot = self._look_up()
            self._cached = (self.clock(), snapshot)
            return snapshot

    def _look_up(self) -> dict[str, Any]:
        problems: list[str] = []
        sources: list[tuple[str, Callable[[], list[QueueCount]]]] = []
        if self.settings.broker_management_url:
            sources.append(("management", self._management))
        if self.settings.broker_url:
            sources.append(("amqp", self._amqp))
        elif self.broker is not None and hasattr(self.broker, "queues"):
            sources.append(("embedded", self._embedded))
        for source, look_up in sources:
            try:
                counts = look_up()
            except Exception as exc:  # a probe reports, it never fails the console
                problems.append(f"{source}: {type(exc).__name__}: {exc}")
                continue
            return {"source": source, "error": "; ".join(problems) or None, "at": utcnow_iso(),
                    "queues": [asdict(count) for count in counts]}
        return {"source": "n/a", "error": "; ".join(problems) or "no broker to ask", "at": utcnow_iso(),
                "queues": [asdict(QueueCount(name, None)) for name in self.names]}

    def _management(self) -> list[QueueCount]:
        url = self.settings.broker_management_url
        assert url is not None
        base, auth = _credentials(url, self.settings.broker_url)
        vhost = _vhost(self.settings.broker_url or "amqp://localhost/")
        response = httpx.get(
            f"{base}/api/queues/{quote(vhost, safe='')}",
            params={"columns": "name,messages_ready,messages_unacknowledged,consumers"},
            auth=auth, timeout=TIMEOUT,
        )
        response.raise_for_status()
        found = {str(q.get("name")): q for q in response.json() if isinstance(q, dict)}
        counts = []
        for name in self.names:
            queue = found.get(name)
            counts.append(QueueCount(name, None) if queue is None else QueueCount(
                name, int(queue.get("messages_ready") or 0), int(queue.get("messages_unacknowledged") or 0),
                int(queue.get("consumers") or 0),
            ))
        prefix = self.settings.broadcast_exchange + "."
        broadcasts = [q for name, q in found.items() if name.startswith(prefix)]
        counts.append(QueueCount(
            prefix + "*", sum(int(q.get("messages_ready") or 0) for q in broadcasts),
            sum(int(q.get("messages_unacknowledged") or 0) for q in broadcasts),
            sum(int(q.get("consumers") or 0) for q in broadcasts), queues=len(broadcasts),
        ))
        return counts

    def _amqp(self) -> list[QueueCount]:
        import pika
        import pika.exceptions

        from recsys_api.broadcast import pika_parameters

        assert self.settings.broker_url is not None
        connection = pika.BlockingConnection(pika_parameters(self.settings.broker_url, connect_timeout=TIMEOUT))
        counts = []
        try:
            for name in self.names:
                channel = connection.channel()
                try:
                    declared = channel.queue_declare(queue=name, passive=True)
                except pika.exceptions.ChannelClosedByBroker:  # no such queue (yet)
                    counts.append(QueueCount(name, None))
                    continue
                counts.append(QueueCount(name, int(declared.method.message_count),
                                         consumers=int(declared.method.consumer_count)))
                channel.close()
        finally:
            connection.close()
        return counts

    def _embedded(self) -> list[QueueCount]:
        queues = self.broker.queues
        counts = []
        for name in self.names:
            queue = queues.get(name)
            counts.append(QueueCount(name, None if queue is None else int(queue.qsize())))
        return counts
