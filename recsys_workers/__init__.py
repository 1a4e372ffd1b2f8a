"""recsys workers: Dramatiq actors that recommend, build engines and follow rollouts.

``dramatiq recsys_workers [--processes P --threads T] [--queues ...]`` runs a worker
pool and ``periodiq recsys_workers`` the scheduler of rebuilds. Both import this
package, which reads the ``RECSYS_`` settings once, builds the broker with its
middleware and actors (:func:`recsys_workers.app.create_worker_app`) and makes it
Dramatiq's global broker. Importing it opens no connection and loads no engine:
that happens in each worker process on first use. See docs/workers.md.
"""

from __future__ import annotations

import logging

import dramatiq

from recsys.config import Settings
from recsys.errors import ConfigError
from recsys_workers.app import WorkerApp, create_worker_app
from recsys_workers.schedule import idle_unscheduled, running_under_periodiq

__all__ = ["EXIT_CONFIG", "WorkerApp", "app", "broker", "create_worker_app", "settings"]

#: Exit status when the settings are invalid (dramatiq's own status for a failed import).
EXIT_CONFIG = 2

try:
    settings = Settings.from_env()
except ConfigError as exc:
    logging.getLogger(__name__).critical("cannot start: %s", exc)
    raise SystemExit(EXIT_CONFIG) from exc
app = create_worker_app(settings)
broker = app.broker
dramatiq.set_broker(broker)

if running_under_periodiq() and not settings.rebuild_cron:
    idle_unscheduled()
