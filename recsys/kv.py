"""Redis: the one client factory of recsys, and a small key-value interface over it.

:func:`redis_client` builds every Redis client of the project (the API's result
backend, the workers' result backend, :class:`RedisKV`) with one policy, so that all
of them fail fast while Redis is down and reconnect by themselves when it returns:

* ``CONNECT_TIMEOUT`` (2 s, or the read timeout when shorter) to open a connection;
* a read timeout: ``KV_TIMEOUT`` (2 s) for short commands, or the caller's longest
  blocking wait plus ``READ_MARGIN`` (5 s) for a result backend;
* one immediate retry (no back-off): enough to replace a pooled connection that died
  with a Redis restart; redis-py's default (retries with back-off) would delay every
  503 while Redis is down;
* a health check of a connection idle for ``HEALTH_CHECK_INTERVAL`` (30 s).

The KV: the API and the workers share state through it: task records, worker
heartbeats, the cluster-wide build lock (see :mod:`recsys.cluster`). Values are
strings; expiry is in seconds. :class:`RedisKV` raises
:class:`~recsys.errors.Unavailable` (not a redis exception), so that a request gets a
503 instead of hanging; :class:`MemoryKV` is its in-memory twin for embedded mode.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from recsys.errors import Unavailable

__all__ = [
    "CONNECT_TIMEOUT",
    "HEALTH_CHECK_INTERVAL",
    "KV",
    "KV_TIMEOUT",
    "READ_MARGIN",
    "MemoryKV",
    "RedisKV",
    "open_kv",
    "redis_client",
]

#: Seconds to open a connection to Redis before giving up.
CONNECT_TIMEOUT = 2.0
#: Seconds a KV command may take.
KV_TIMEOUT = 2.0
#: Seconds added to the longest blocking wait (a result backend's) for the socket's read timeout.
READ_MARGIN = 5.0
#: A pooled connection idle this many seconds is checked (PING) before its next command.
HEALTH_CHECK_INTERVAL = 30


def redis_client(url: str, *, read_timeout: float = KV_TIMEOUT, decode_responses: bool = False) -> Any:
    """A redis-py client of ``url`` with recsys's one policy (see the module docstring).

    ``read_timeout``: seconds one command may take (a blocking wait included);
    ``decode_responses``: str instead of bytes (Dramatiq's result backends need bytes).
    Nothing connects until the first command; the client is safe to use after a fork.
    """
    import redis  # imported here: embedded mode and tools need no Redis client
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=min(CONNECT_TIMEOUT, read_timeout),
        socket_timeout=read_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        retry=Retry(NoBackoff(), 1),
        decode_responses=decode_responses,
    )


class KV(Protocol):
    """What recsys needs from a key-value store."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, *, ttl: float | None = None, nx: bool = False) -> bool:
        """Store ``value``; with ``nx`` only if the key is absent. True when stored."""
        ...

    def delete(self, key: str) -> None: ...

    def delete_if(self, key: str, value: str) -> bool:
        """Delete ``key`` only if it holds ``value`` (compare-and-delete)."""
        ...

    def expire_if(self, key: str, value: str, ttl: float) -> bool:
        """Reset the expiry of ``key`` only if it holds ``value`` (lock renewal)."""
        ...

    def scan(self, prefix: str) -> dict[str, str]:
        """Every live key starting with ``prefix``, with its value."""
        ...

    def ping(self) -> None:
        """Raise Unavailable when the store cannot be reached."""
        ...

    def close(self) -> None: ...


class MemoryKV:
    """In-process KV with expiry, thread-safe. Expired keys are dropped as they are
    met and by a sweep every 1,000 writes, so memory stays bounded."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}
        self._lock = threading.Lock()
        self._writes = 0

    def _live(self, key: str, now: float) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= now:
            del self._data[key]
            return None
        return value

    def _sweep(self, now: float) -> None:
        self._writes += 1
        if self._writes % 1000 == 0:
            for key in [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]:
                del self._data[key]

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key, time.monotonic())

    def set(self, key: str, value: str, *, ttl: float | None = None, nx: bool = False) -> bool:
        now = time.monotonic()
        with self._lock:
            if nx and self._live(key, now) is not None:
                return False
            self._data[key] = (value, None if ttl is None else now + ttl)
            self._sweep(now)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def delete_if(self, key: str, value: str) -> bool:
        with self._lock:
            if self._live(key, time.monotonic()) == value:
                del self._data[key]
                return True
            return False

    def expire_if(self, key: str, value: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._live(key, now) == value:
                self._data[key] = (value, now + ttl)
                return True
            return False

    def scan(self, prefix: str) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            keys = [k for k in self._data if k.startswith(prefix)]
            found = {k: self._live(k, now) for k in keys}
        return {k: v for k, v in found.items() if v is not None}

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._data)


_DELETE_IF = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_EXPIRE_IF = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


class RedisKV:
    """KV on Redis. Every call raises Unavailable (not a redis exception) when Redis
    cannot be reached within ``timeout`` seconds."""

    def __init__(self, url: str, *, timeout: float = KV_TIMEOUT) -> None:
        import redis

        self._redis_errors: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
        self.url = url
        self.client: Any = redis_client(url, read_timeout=timeout, decode_responses=True)
        self._delete_if = self.client.register_script(_DELETE_IF)
        self._expire_if = self.client.register_script(_EXPIRE_IF)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._redis_errors as exc:
            raise Unavailable(f"Redis at {_safe(self.url)} is unreachable: {exc}") from exc

    def get(self, key: str) -> str | None:
        with self._errors():
            value = self.client.get(key)
        return None if value is None else str(value)

    def set(self, key: str, value: str, *, ttl: float | None = None, nx: bool = False) -> bool:
        px = None if ttl is None else max(1, int(ttl * 1000))
        with self._errors():
            return bool(self.client.set(key, value, px=px, nx=nx))

    def delete(self, key: str) -> None:
        with self._errors():
            self.client.delete(key)

    def delete_if(self, key: str, value: str) -> bool:
        with self._errors():
            return bool(self._delete_if(keys=[key], args=[value]))

    def expire_if(self, key: str, value: str, ttl: float) -> bool:
        with self._errors():
            return bool(self._expire_if(keys=[key], args=[value, max(1, int(ttl * 1000))]))

    def scan(self, prefix: str) -> dict[str, str]:
        pattern = prefix.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?").replace("[", "\\[") + "*"
        with self._errors():
            keys = sorted(self.client.scan_iter(match=pattern, count=500))
            if not keys:
                return {}
            values = self.client.mget(keys)
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    def ping(self) -> None:
        with self._errors():
            self.client.ping()

    def close(self) -> None:
        self.client.close()


def _safe(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def open_kv(results_url: str | None) -> KV:
    """RedisKV for a ``redis://`` URL, MemoryKV for None (embedded mode)."""
    if results_url is None:
        return MemoryKV()
    return RedisKV(results_url)
