"""Result backends the API waits on: Redis (deployments) and in-memory (embedded, tests).

Both are Dramatiq :class:`~dramatiq.results.ResultBackend` subclasses, so the
workers' ``Results`` middleware stores into them and ``message.get_result(backend=...)``
reads from them.

* :func:`redis_backend` builds Dramatiq's ``RedisBackend`` on a client with bounded
  connect timeouts and a single immediate retry: a request fails fast (503) while
  Redis is down, and the first request after Redis returns reconnects by itself.
  The blocking wait is a ``BRPOPLPUSH`` (no polling) with whole-second granularity.
* :class:`MemoryResultBackend` keeps results in this process and wakes waiters at
  once when a result is stored (Dramatiq's ``StubBackend`` polls with a 100 ms
  back-off and shares one dict between all its instances).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dramatiq.results import ResultBackend, ResultMissing, ResultTimeout
from dramatiq.results.backend import DEFAULT_TIMEOUT, Missing

__all__ = ["MemoryResultBackend", "redis_backend", "redis_client"]

#: Seconds to open a connection to Redis before giving up.
CONNECT_TIMEOUT = 2.0
#: Seconds added to the longest blocking wait for the socket's read timeout.
READ_MARGIN = 5.0


def redis_client(url: str, *, read_timeout: float) -> Any:
    """A redis-py client that fails fast: bounded connect/read timeouts, one immediate
    retry (enough to replace a pooled connection that died with a Redis restart)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=read_timeout,
        retry=Retry(NoBackoff(), 1),
    )


def redis_backend(url: str, *, longest_wait: float) -> ResultBackend:
    """Dramatiq's RedisBackend on :func:`redis_client`; ``longest_wait`` (seconds) is
    the longest blocking wait the API makes (its request timeout)."""
    from dramatiq.results.backends import RedisBackend

    backend: ResultBackend = RedisBackend(client=redis_client(url, read_timeout=longest_wait + READ_MARGIN))
    return backend


class MemoryResultBackend(ResultBackend):
    """Results in this process's memory, with expiry; a stored result wakes its waiters."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._results: dict[str, tuple[bytes, float]] = {}
        self._changed = threading.Condition()

    def _get(self, message_key: str) -> Any:
        item = self._results.get(message_key)
        if item is None:
            return Missing
        data, expires = item
        if time.monotonic() >= expires:
            self._results.pop(message_key, None)
            return Missing
        return self.encoder.decode(data)

    def _store(self, message_key: str, result: Any, ttl: int) -> None:
        data = self.encoder.encode(result)
        now = time.monotonic()
        with self._changed:
            for key in [k for k, (_, exp) in self._results.items() if exp <= now]:
                del self._results[key]
            self._results[message_key] = (data, now + ttl / 1000)
            self._changed.notify_all()

    def get_result(self, message: Any, *, block: bool = False, timeout: int | None = None) -> Any:
        key = self.build_message_key(message)
        deadline = time.monotonic() + (DEFAULT_TIMEOUT if timeout is None else timeout) / 1000
        with self._changed:
            while True:
                result = self._get(key)
                if result is not Missing:
                    return self.unwrap_result(result)  # type: ignore[no-untyped-call]
                if not block:
                    raise ResultMissing(message)  # type: ignore[no-untyped-call]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResultTimeout(message)  # type: ignore[no-untyped-call]
                self._changed.wait(left)
