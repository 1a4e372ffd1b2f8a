"""The real dependencies of a deployment, built from the settings (used by :func:`get_app`).

Each client fails fast while its service is down and reconnects by itself when it
returns: no connection is kept once it has failed.

* RabbitMQ (:class:`recsys_api.publisher.TaskBroker`, Dramatiq's ``RabbitmqBroker``
  that notices closed connections; no middleware: the API only enqueues): one
  connection attempt, 2 s to connect, 2 s per socket operation. Dramatiq opens one
  connection per thread and drops it after an error. A refused connection fails in
  milliseconds; a host that drops packets costs each request up to Dramatiq's six
  enqueue attempts x 2 s.
* Redis: every client comes from :func:`recsys.kv.redis_client` (2 s to connect, a
  single immediate retry instead of redis-py's default retries with back-off):
  :func:`recsys_api.redis_results.redis_backend` for results, :class:`recsys.kv.RedisKV`
  (2 s per command) for the task records, heartbeats and build lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dramatiq

from recsys.archive import Limits
from recsys.config import Settings
from recsys.errors import Unavailable
from recsys.kv import RedisKV
from recsys_api.archive_store import DiskArchiveStore
from recsys_api.broadcast import pika_parameters

__all__ = ["open_archive_store", "rabbitmq_broker", "rabbitmq_check", "redis_kv"]

#: Seconds /ready allows for the RabbitMQ check.
PROBE_TIMEOUT = 2.0


def rabbitmq_broker(url: str) -> dramatiq.Broker:
    from recsys_api.publisher import QUIET_LOGGERS, TaskBroker

    broker = TaskBroker(url=url, middleware=[])
    broker.parameters = pika_parameters(url)
    logging.getLogger("pika").setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:  # a closed socket: TaskBroker logs it once, at INFO
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return broker


def redis_kv(url: str) -> RedisKV:
    return RedisKV(url)


def open_archive_store(settings: Settings) -> DiskArchiveStore:
    """The disk archive store under ``<RECSYS_DATA_DIR>/archives``."""
    return DiskArchiveStore(settings.data_dir / "archives", Limits.from_settings(settings), keep=settings.keep_engines,
                            quality_tolerance=settings.quality_tolerance)


def rabbitmq_check(url: str) -> Callable[[], dict[str, Any]]:
    """A /ready check: open (and close) a connection to RabbitMQ."""

    def check() -> dict[str, Any]:
        import pika
        import pika.exceptions

        try:
            connection = pika.BlockingConnection(pika_parameters(url, connect_timeout=PROBE_TIMEOUT))
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise Unavailable(f"RabbitMQ is unreachable ({type(exc).__name__}: {exc})") from exc
        connection.close()
        return {}

    return check
