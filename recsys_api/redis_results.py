"""The result backend the API waits on in a deployment: Dramatiq's RedisBackend.

(The embedded mode injects the workers' in-memory backend,
:class:`recsys_api.memory_results.MemoryResultBackend`, into ``create_app``.)

* :func:`redis_backend` builds a ``RedisBackend`` on the project's one Redis client
  (:func:`recsys.kv.redis_client`: bounded timeouts, a single immediate retry): a
  request fails fast (503) while Redis is down, and the first request after Redis
  returns reconnects by itself. Waits block in Redis (no polling).
* ``take_result`` (:class:`TakingRedisBackend`) is the wait of a request answered
  within its own HTTP call: its task id is never shown, so nobody can ask for that
  result again, and the wait *pops* it (``BRPOP``, one round trip) instead of leaving
  it in Redis for ``RECSYS_RESULT_TTL``. Under sustained load that keeps Redis from
  holding ten minutes of answered results. Its timeout counts milliseconds (a fractional
  ``BRPOP`` timeout: Redis 6 or later). Results of tasks whose id was handed out
  (202, 504, builds) are read with ``get_result`` (whole seconds) and kept.
  This relies on how Dramatiq's RedisBackend stores a result (a one-element list under
  ``build_message_key``); tests/integration/api/test_results_redis.py fails if that changes.
* ``ping`` is the check of the API's :class:`~recsys_api.circuit.Circuit`: while Redis
  is known to be down, a request is refused (503) before its task is sent.
"""

from __future__ import annotations

from typing import Any

from dramatiq.results import ResultBackend, ResultTimeout
from dramatiq.results.backends import RedisBackend

from recsys.kv import READ_MARGIN, redis_client

__all__ = ["TakingRedisBackend", "redis_backend"]


def redis_backend(url: str, *, longest_wait: float) -> ResultBackend:
    """Dramatiq's RedisBackend on :func:`recsys.kv.redis_client`; ``longest_wait``
    (seconds) is the longest blocking wait the API makes (its request timeout)."""
    backend: ResultBackend = TakingRedisBackend(client=redis_client(url, read_timeout=longest_wait + READ_MARGIN))
    return backend


class TakingRedisBackend(RedisBackend):  # type: ignore[misc]
    """Dramatiq's RedisBackend plus :meth:`take_result` and :meth:`ping`."""

    def ping(self) -> None:
        """One PING; raises what redis-py raises when Redis is unreachable."""
        self.client.ping()

    def take_result(self, message: Any, *, timeout: int) -> Any:
        """Block up to ``timeout`` ms (at least 10) for the result of ``message`` and
        remove it from Redis. Raises ResultTimeout or ResultFailure."""
        key = self.build_message_key(message)
        popped = self.client.brpop([key], max(0.01, timeout / 1000))
        if popped is None:
            raise ResultTimeout(message)  # type: ignore[no-untyped-call]
        return self.unwrap_result(self.encoder.decode(popped[1]))
