"""The Dramatiq broker of recsys, built from the settings in one place.

* ``RECSYS_BROKER_URL`` set: a :class:`~recsys_workers.fanout.FanoutRabbitmqBroker`
  (RabbitMQ; the queue ``RECSYS_BROADCAST_EXCHANGE`` is a per-process fanout
  subscription) with the ``Results`` middleware on Redis (``RECSYS_RESULTS_URL``):
  :class:`~recsys_workers.results.WorkerRedisBackend`, on the project's one Redis client
  (:func:`recsys.kv.redis_client`), which fails fast when Redis is down, and the
  :class:`~recsys_workers.results.ResultGuard` middleware (a redelivered task whose
  result is stored, or a task whose result cannot be stored, is skipped). Dramatiq's
  consumers reconnect 200 ms after a connection closes instead of 3 s
  (:func:`recsys_workers.reconnect.set_restart_delay`, applied here, so also under the
  plain ``dramatiq recsys_workers`` command; ``dramatiq_restart_delay`` in the
  environment overrides it).
* unset (embedded one-process mode): a :class:`~dramatiq.brokers.stub.StubBroker`
  with the ``Results`` middleware on a :class:`~recsys_api.memory_results.MemoryResultBackend`
  (waiters wake as soon as a result is stored; expired results are dropped). The
  one-process server runs a ``dramatiq.Worker`` on this broker; its API waits on
  ``broker.get_results_backend()``.

Results are kept ``RECSYS_RESULT_TTL`` seconds. Besides ``Results``, every broker gets
``CurrentMessage`` (actors read their message id and options) and periodiq's
middleware (the ``periodic`` actor option; stale scheduled ticks are skipped).
Nothing here connects to anything: connections open on first use.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dramatiq import Broker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage
from dramatiq.results import ResultBackend, Results
from periodiq import PeriodiqMiddleware

from recsys.config import Settings
from recsys.kv import READ_MARGIN, redis_client
from recsys_api.memory_results import MemoryResultBackend
from recsys_workers.fanout import FanoutRabbitmqBroker
from recsys_workers.reconnect import set_restart_delay
from recsys_workers.results import ResultGuard, WorkerRedisBackend

__all__ = ["SCHEDULE_SKIP_AFTER", "create_broker", "redis_result_backend"]

#: A scheduled tick still unprocessed this many seconds after its time is skipped.
SCHEDULE_SKIP_AFTER = 300


def redis_result_backend(settings: Settings) -> WorkerRedisBackend:
    """Dramatiq's RedisBackend (as :class:`~recsys_workers.results.WorkerRedisBackend`) on
    :func:`recsys.kv.redis_client`. Reads may block for as long as the API waits on a
    result (``RECSYS_REQUEST_TIMEOUT``)."""
    client = redis_client(settings.results_url, read_timeout=settings.request_timeout + READ_MARGIN)
    return WorkerRedisBackend(client=client, where=_where(settings.results_url))


def _where(url: str) -> str:
    """``host:port/db`` of a Redis URL, without its credentials, for log lines."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname or url}{port}{parts.path}"


def create_broker(settings: Settings, *, result_backend: ResultBackend | None = None) -> Broker:
    """The broker for ``settings``, with its Results, CurrentMessage and periodiq
    middleware. ``result_backend`` replaces the default one (embedded mode may share
    the API's)."""
    broker: Any
    if settings.broker_url is None:
        broker = StubBroker()
        backend = result_backend if result_backend is not None else MemoryResultBackend()
    else:
        set_restart_delay()
        broker = FanoutRabbitmqBroker(url=settings.broker_url, broadcast_queue=settings.broadcast_exchange)
        backend = result_backend if result_backend is not None else redis_result_backend(settings)
    broker.add_middleware(Results(backend=backend, result_ttl=settings.result_ttl * 1000))  # type: ignore[no-untyped-call]
    if isinstance(backend, WorkerRedisBackend):
        broker.add_middleware(ResultGuard(backend))
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(PeriodiqMiddleware(skip_delay=SCHEDULE_SKIP_AFTER))
    return broker  # type: ignore[no-any-return]
