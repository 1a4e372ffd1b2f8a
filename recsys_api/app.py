"""The Falcon app: :func:`create_app` (dependencies injected) and :func:`get_app` (gunicorn).

Routes (see docs/api.md and ``GET /openapi.json``)::

    GET  /health  /ready  /metrics  /openapi.json  /docs (+ /docs/assets/*, /docs/ui/*)
    POST /v1/recommendations            GET  /v1/tasks/{task_id}
    POST /v1/recommendations/batch
    GET  /v1/engine                     GET, PUT /v1/engine/archive
    GET, HEAD /v1/engine/files/{sha256}
    POST /v1/engine/rollback            POST /v1/engine/builds
    GET  /v1/workers                    GET  /v1/engines
    GET  /console (+ /console/assets/*) GET  /v1/console/state
    POST /v1/publications               GET  /v1/publications/changes[/{change_id}]
    GET, DELETE /v1/publications/pushed POST /v1/publications/changes/refused

Every GET route answers HEAD too (:class:`recsys_api.head.HeadRouter`).

The app never imports torch or an engine plugin: engines are listed from their
entry points without loading them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import falcon
from dramatiq.results import ResultBackend

from recsys.changes import ChangeLog
from recsys.cluster import BuildLock, Heartbeats, Rollouts, TaskRecords
from recsys.config import Settings
from recsys.errors import ConfigError
from recsys.kv import KV
from recsys.progress import ProgressStore
from recsys.registry import EngineRecord, Registry
from recsys_api import errors
from recsys_api.archive_store import ArchiveStore
from recsys_api.auth import RequireToken
from recsys_api.broadcast import Broadcaster, PikaBroadcaster
from recsys_api.builds import BuildStarter
from recsys_api.features import FeatureGate
from recsys_api.head import HeadRouter, HeadStreams
from recsys_api.live import LiveUpdates, Resender
from recsys_api.metrics import Metrics, MetricsMiddleware
from recsys_api.openapi import build_spec
from recsys_api.queues import QueueStats
from recsys_api.redis_results import redis_backend
from recsys_api.resources.console import ConsoleState, add_console_routes
from recsys_api.resources.docs import MetricsPage, add_docs_routes
from recsys_api.resources.engine import Builds, EngineArchive, EngineFile, EngineManifest, Rollback
from recsys_api.resources.engines import Engines
from recsys_api.resources.health import Health, Ready, engine_check
from recsys_api.resources.publications import Change, Changes, Publications, Pushed, RefusedChanges
from recsys_api.resources.recommendations import RecommendationBatch, Recommendations
from recsys_api.resources.tasks import Task
from recsys_api.resources.workers import Workers
from recsys_api.tasks import TaskClient, results_circuit

__all__ = ["configure_logging", "create_app", "get_app", "require_broker"]

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    broker: dramatiq.Broker,
    result_backend: ResultBackend,
    kv: KV,
    archive_store: ArchiveStore,
    broadcaster: Broadcaster,
    registry_records: Sequence[EngineRecord] | None = None,
    broker_check: Callable[[], Any] | None = None,
    changes: ChangeLog | None = None,
    resend: bool = False,
    resend_stop: threading.Event | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the app on the given dependencies.

    ``broker`` is where tasks are sent (a RabbitmqBroker, or a StubBroker in embedded
    mode and tests) and ``result_backend`` where the workers store results.
    ``registry_records`` default to the installed engine entry points (not imported).
    ``broker_check`` is the /ready probe of the broker (default: none needed, as for a
    StubBroker). ``changes``: the publication change log (default: the one in
    ``RECSYS_DATA_DIR``). ``resend=True`` starts the thread that re-sends the apply of
    pending changes at start and every ``RECSYS_CHANGES_RESEND_INTERVAL`` seconds
    (:class:`recsys_api.live.Resender`; gunicorn's workers and ``recsys serve``), until
    ``resend_stop`` is set.

    Apart from ``resend``, creating the app has no side effect (no message sent, nothing installed): the
    start-engine step runs once per deployment, in gunicorn's master
    (:func:`recsys_api.startup.run_start_step`, from ``deploy/gunicorn.conf.py``), and
    once in ``recsys serve``.
    """
    broker.declare_queue(settings.request_queue)
    broker.declare_queue(settings.build_queue)
    results_url = None if settings.embedded else settings.results_url
    tasks = TaskClient(
        broker, result_backend, TaskRecords(kv, settings.result_ttl), result_ttl=settings.result_ttl,
        broker_url=settings.broker_url, results_url=results_url, circuit=results_circuit(result_backend, results_url),
    )
    builds = BuildStarter(tasks, BuildLock(kv, settings.build_lock_ttl), settings.build_queue)
    require_token = RequireToken(settings.api_token)
    if registry_records is None:
        registry_records = Registry.discover(load=False).records()

    live = LiveUpdates(changes if changes is not None else ChangeLog(settings.data_dir), tasks,
                       settings.build_queue, archive_store, BuildLock(kv, settings.build_lock_ttl))
    metrics = Metrics(archive_store, changes=live.changes)

    middleware: list[Any] = [MetricsMiddleware(metrics), HeadStreams()]
    app = falcon.App(middleware=middleware, router=HeadRouter())  # HEAD wherever GET works (recsys_api.head)
    errors.install(app)
    app.add_route("/health", Health())
    app.add_route("/ready", Ready({
        "broker": broker_check or _embedded_broker,
        "results": lambda: kv.ping(),
        "engine": engine_check(archive_store),
    }))
    app.add_route("/metrics", MetricsPage(metrics))
    add_docs_routes(app, build_spec, archive_store)  # its examples: the current engine's corpus
    features = FeatureGate(Heartbeats(kv, settings.heartbeat_interval), settings.request_queue)
    app.add_route("/v1/recommendations", Recommendations(settings, tasks, archive_store, metrics, features,
                                                                   builds))
    app.add_route("/v1/recommendations/batch", RecommendationBatch(settings, tasks, archive_store, metrics,
                                                                   features, builds))
    progress = ProgressStore(kv, settings.result_ttl)
    app.add_route("/v1/tasks/{task_id}", Task(tasks, settings.result_ttl, progress))
    app.add_route("/v1/engine", EngineManifest(archive_store))
    app.add_route("/v1/engine/files/{sha256}", EngineFile(archive_store, metrics))
    app.add_route("/v1/engine/archive", EngineArchive(archive_store, broadcaster, require_token, metrics,
                                                      on_current=live.follow))
    app.add_route("/v1/engine/rollback", Rollback(archive_store, broadcaster, require_token, on_current=live.follow))
    app.add_route("/v1/engine/builds", Builds(builds, require_token))
    app.add_route("/v1/workers", Workers(archive_store, Heartbeats(kv, settings.heartbeat_interval), Rollouts(kv),
                                         settings.request_queue))
    add_console_routes(app, ConsoleState(archive_store, Heartbeats(kv, settings.heartbeat_interval),
                                         BuildLock(kv, settings.build_lock_ttl), progress,
                                         QueueStats(settings, broker=broker), settings.request_queue))
    app.add_route("/v1/engines", Engines(registry_records, settings.engine))
    app.add_route("/v1/publications", Publications(live, require_token, settings.push_max_bytes))
    app.add_route("/v1/publications/changes", Changes(live.changes))
    app.add_route("/v1/publications/changes/refused", RefusedChanges(live.changes, require_token))
    app.add_route("/v1/publications/changes/{change_id}", Change(live.changes))
    app.add_route("/v1/publications/pushed", Pushed(live.changes, require_token))
    if resend:
        Resender(live, settings.changes_resend_interval, resend_stop).start()
    return app


def _embedded_broker() -> dict[str, Any]:
    return {"embedded": True}


def get_app(settings: Settings | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    """The app of a deployment, on RabbitMQ and Redis from the settings (``RECSYS_*``)."""
    from recsys_api import services

    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.log_level)
    broker_url = require_broker(settings)
    return create_app(
        settings,
        broker=services.rabbitmq_broker(broker_url),
        result_backend=redis_backend(settings.results_url, longest_wait=settings.request_timeout),
        kv=services.redis_kv(settings.results_url),
        archive_store=services.open_archive_store(settings),
        broadcaster=PikaBroadcaster(broker_url, settings.broadcast_exchange),
        broker_check=services.rabbitmq_check(broker_url),
        resend=True,
    )


def require_broker(settings: Settings) -> str:
    """``RECSYS_BROKER_URL``; a ConfigError when it is not set (gunicorn needs RabbitMQ)."""
    if settings.broker_url is None:
        raise ConfigError(
            "RECSYS_BROKER_URL is not set: the API served by gunicorn needs RabbitMQ and Redis "
            "(RECSYS_BROKER_URL, RECSYS_RESULTS_URL); for the one-process embedded mode run 'recsys serve'"
        )
    return settings.broker_url


def configure_logging(level: str) -> None:
    """Log to stderr with the process id (gunicorn runs several), unless already set up."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    root.setLevel(level.upper())
