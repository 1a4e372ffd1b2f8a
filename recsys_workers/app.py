"""Assembling a worker: broker, middleware, per-process services, actors.

:func:`create_worker_app` is what ``import recsys_workers`` runs with the settings
from the environment. The one-process server and tests call it directly with their
own settings (and, in embedded mode, the KV and result backend they share with the
API)::

    app = create_worker_app(settings, kv=kv)
    worker = app.start_worker(threads=2)       # process_boot, then a dramatiq.Worker
    ...
    worker.stop(); app.close()

The API side of embedded mode sends to ``app.broker`` and waits on ``app.results``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dramatiq import Broker, Worker
from dramatiq.results import ResultBackend

from recsys.config import Settings
from recsys.kv import KV
from recsys.registry import Registry
from recsys_workers.actors import Actors, declare_actors
from recsys_workers.api_client import ApiClient
from recsys_workers.broker import create_broker
from recsys_workers.metrics import WorkerMetricsMiddleware
from recsys_workers.middleware import CatchUpMiddleware, EngineMiddleware, HeartbeatMiddleware
from recsys_workers.progress import BuildRecorder
from recsys_workers.services import WorkerServices

__all__ = ["WorkerApp", "create_worker_app"]


@dataclass(frozen=True)
class WorkerApp:
    """A configured worker: its broker (actors declared), result backend and services."""

    settings: Settings
    broker: Broker
    results: ResultBackend
    services: WorkerServices
    actors: Actors

    def start_worker(self, threads: int, *, poll_ms: int = 1000) -> Worker:
        """Run a Dramatiq worker in this process on this broker (the embedded mode, where
        ``recsys serve`` may not import dramatiq itself): emits ``process_boot`` (starts
        Dramatiq's time limits), then starts the worker, which boots the heartbeat and
        catch-up threads. ``poll_ms``: how often idle threads look at the stop flag.
        Stop it with ``worker.stop(timeout_ms)``, then :meth:`close`."""
        self.broker.emit_after("process_boot")
        worker = Worker(self.broker, worker_threads=threads, worker_timeout=poll_ms)
        worker.start()
        return worker

    def close(self) -> None:
        self.services.close()
        self.broker.close()


def create_worker_app(
    settings: Settings,
    *,
    kv: KV | None = None,
    registry: Registry | None = None,
    api: ApiClient | None = None,
    result_backend: ResultBackend | None = None,
    background: bool = True,
) -> WorkerApp:
    """Build the broker for ``settings`` with the recsys middleware and actors.

    ``kv``, ``registry``, ``api`` and ``result_backend`` replace the defaults (Redis
    or memory, the installed plugins, an HTTP client of ``RECSYS_API_URL``, Redis
    or memory). ``background=False`` leaves out the heartbeat and catch-up threads
    (unit tests drive them by hand).
    """
    _apply_log_level(settings)
    broker = create_broker(settings, result_backend=result_backend)
    services = WorkerServices(settings, kv=kv, registry=registry, api=api)
    broker.add_middleware(EngineMiddleware(services))
    broker.add_middleware(BuildRecorder(services))
    broker.add_middleware(WorkerMetricsMiddleware(services))
    if background:
        broker.add_middleware(HeartbeatMiddleware(services))
        broker.add_middleware(CatchUpMiddleware(services))
    actors = declare_actors(broker, services)
    return WorkerApp(settings, broker, broker.get_results_backend(), services, actors)


def _apply_log_level(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    for name in ("recsys", "recsys_workers"):
        logging.getLogger(name).setLevel(level)
    # httpx logs every request at INFO: the catch-up check would log one line a minute per process.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
