"""Prometheus metrics of the API, served at ``GET /metrics``.

==========================================  =========  ================================================
metric                                      type       labels / meaning
==========================================  =========  ================================================
``recsys_api_requests_total``               counter    method, route (the URI template), status
``recsys_api_request_duration_seconds``     histogram  method, route
``recsys_api_waits_in_flight``              gauge      requests blocked waiting for a task's result
``recsys_api_file_bytes_served_total``      counter    route: body bytes of engine files and archives
                                                       answered (200 and 206 to GET)
``recsys_engine_generation``                gauge      the current engine's generation (absent before one)
``recsys_engine_info``                      gauge      1, labelled engine, version, created_at
``recsys_publication_changes``              gauge      status: live-update changes in the change log
                                                       (pending, applied, rolled_back, refused)
==========================================  =========  ================================================

Gunicorn runs several worker processes, each with its own counters. When the
environment variable ``PROMETHEUS_MULTIPROC_DIR`` names a writable, empty folder
(set before the process starts; deploy/gunicorn.conf.py empties it at start and
cleans up after each dead worker), the processes share their values through files
there and every scrape sees the whole server; without it each scrape sees only the
process that answered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recsys.changes import ChangeLog
from recsys.errors import RecsysError
from recsys_api.archive_store import ArchiveStore

__all__ = ["Metrics", "MetricsMiddleware"]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Methods counted by name; any other is counted as OTHER (a label must not be unbounded).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class _EngineCollector(Collector):
    """Reads the current engine at scrape time (cheap: the store caches its state)."""

    def __init__(self, store: ArchiveStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        current = self.store.current()
        if current is None:
            return
        generation = GaugeMetricFamily("recsys_engine_generation", "generation of the API's current engine")
        generation.add_metric([], current.generation)
        yield generation
        info = GaugeMetricFamily(
            "recsys_engine_info", "the API's current engine (value 1)", labels=["engine", "version", "created_at"]
        )
        info.add_metric([current.manifest.engine, current.version, current.manifest.created_at], 1)
        yield info


class _ChangesCollector(Collector):
    """Counts the change log's changes by status at scrape time (one indexed query)."""

    def __init__(self, changes: ChangeLog) -> None:
        self.changes = changes

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self.changes.counts()
        except RecsysError:
            return
        family = GaugeMetricFamily("recsys_publication_changes", "live-update changes in the API's change log",
                                   labels=["status"])
        for status, count in counts.items():
            family.add_metric([status], count)
        yield family


class Metrics:
    """The API's metrics, in a registry of their own (so several apps can live in one
    process, as in tests)."""

    def __init__(self, store: ArchiveStore, *, multiproc_dir: str | None = None,
                 changes: ChangeLog | None = None) -> None:
        self.multiproc_dir = multiproc_dir if multiproc_dir is not None else os.environ.get(MULTIPROC_ENV)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recsys_api_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "recsys_api_request_duration_seconds", "time to answer an HTTP request", ["method", "route"],
            buckets=BUCKETS, registry=self.registry,
        )
        self.file_bytes = Counter(
            "recsys_api_file_bytes_served", "body bytes of engine files and archives answered (200/206 to GET)",
            ["route"], registry=self.registry,
        )
        self.waits = Gauge(
            "recsys_api_waits_in_flight", "requests waiting for a task's result", multiprocess_mode="livesum",
            registry=self.registry,
        )
        self._engine = _EngineCollector(store)
        self.registry.register(self._engine)
        self._changes = _ChangesCollector(changes) if changes is not None else None
        if self._changes is not None:
            self.registry.register(self._changes)

    def served(self, route: str, size: int) -> None:
        """Count ``size`` body bytes answered on ``route`` (a URI template)."""
        if size:
            self.file_bytes.labels(route).inc(size)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if self.multiproc_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)  # type: ignore[no-untyped-call]
            registry.register(self._engine)
            if self._changes is not None:
                registry.register(self._changes)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts every request by method, route template and status, and times it."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # The labelled children, looked up once per (method, route, status): ``labels()``
        # takes a lock and builds a key on every call. Bounded: routes and methods are a
        # fixed set, statuses a few dozen.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        key = (req.method, req.uri_template or "unmatched", resp.status_code)
        children = self._children.get(key)
        if children is None:
            method = req.method if req.method in METHODS else "OTHER"
            children = (self.metrics.requests.labels(method, key[1], str(key[2])),
                        self.metrics.latency.labels(method, key[1]))
            if req.method in METHODS:
                self._children[key] = children
        children[0].inc()
        if started is not None:
            children[1].observe(time.perf_counter() - started)
