"""Fault scenarios under keep-alive load, shared by ``tests/faults`` and ``benchmarks/faults.py``.

:class:`FaultStack` is the distributed stack on loopback: gunicorn
(``deploy/gunicorn.conf.py``, 2 processes) and two ``dramatiq recsys_workers`` pools
serving the lexical engine (built from the sample corpus and installed by the API's
start step), on a private RabbitMQ vhost and Redis database, each reached through a
:class:`~tests.support.proxy.TcpProxy` of its own so that a scenario can cut the
connections of every process at once without touching the shared servers.

Each scenario runs :class:`~tests.support.load.KeepAliveLoad` (8 clients, one
persistent connection each, ``POST /v1/recommendations`` back to back), injects one
fault and returns its :class:`FaultFigures`:

* :func:`close_rabbitmq_connections`: every AMQP connection (API and workers) is closed
  at once; RabbitMQ itself stays up, so clients may reconnect at once;
* :func:`redis_outage`: Redis refuses connections for a while, then comes back;
* :func:`kill_api_master`: gunicorn's master is killed (``kill -9``, its workers
  orphaned) and a supervisor starts a new one a second later on the same port.

Times are ``time.monotonic()`` of this process; every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.integration.api.stack import TOKEN, Api, Pool
from tests.support.load import KeepAliveLoad, Sample
from tests.support.processes import forget_cluster_state, group_pids, recsys_env, wait_until
from tests.support.proxy import TcpProxy, via_proxy

__all__ = [
    "CLIENTS",
    "QUERY",
    "FaultFigures",
    "FaultStack",
    "close_rabbitmq_connections",
    "kill_api_master",
    "redis_outage",
]

#: Keep-alive clients of every scenario (the issue's measurement).
CLIENTS = 8
#: What every client asks, over and over.
QUERY = {"text": "Convolutional neural networks for image classification.", "k": 5}
#: Seconds of load before a fault and after it (or after the dependency is back).
BEFORE, AFTER = 1.5, 3.0


@dataclass(frozen=True)
class FaultFigures:
    """What clients saw around one fault.

    The *window* is the requests started from ``BEFORE`` seconds before the fault to
    ``AFTER`` seconds after its end (the drop itself; the dependency or the master back).
    ``during``: the statuses of the requests started and answered while the fault lasted.
    ``recovery_s``: from the fault's end to the answer of the first request started
    then that got a 200. ``settled_s``: from the fault's end to the last answer of the
    requests started before it (how long a request was left waiting after it).
    """

    fault: str
    requests: int
    statuses: dict[str, int]
    max_latency_s: float
    recovery_s: float | None
    settled_s: float
    fault_s: float  # how long the fault lasted (0 for a drop)
    during: dict[str, int] = field(default_factory=dict)  # statuses of requests made within the fault
    max_latency_during_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status.isdigit() and int(status) >= 500
                   and status != "503")

    def row(self) -> dict[str, Any]:
        return {
            "fault": self.fault, "requests": self.requests, "statuses": self.statuses,
            "max_latency_s": round(self.max_latency_s, 3),
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 3),
            "settled_s": round(self.settled_s, 3), "fault_s": round(self.fault_s, 3),
            "during": self.during, "max_latency_during_s": round(self.max_latency_during_s, 3), **self.details,
        }


def _target(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


class FaultStack:
    """gunicorn + two worker pools + the lexical engine, RabbitMQ and Redis behind proxies.

    ``name`` prefixes the queues and the exchange (a private set per stack); the vhost and
    the Redis database come from the caller (tests/conftest.py's fixtures, or the
    benchmark's own).
    """

    def __init__(self, folder: Path, rabbitmq_url: str, redis_url: str, *, name: str = "faults",
                 pools: int = 2, processes: int = 1, api_workers: int = 2, api_threads: int = 8,
                 settings: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.name = name
        self.redis_url = redis_url
        self.amqp = TcpProxy(_target(rabbitmq_url, 5672), name=f"{name}-amqp-proxy")
        self.redis = TcpProxy(_target(redis_url, 6379), name=f"{name}-redis-proxy")
        self.archive = folder / "lexical.zip"
        self.env = recsys_env(
            RECSYS_BROKER_URL=via_proxy(rabbitmq_url, self.amqp),
            RECSYS_RESULTS_URL=via_proxy(redis_url, self.redis),
            RECSYS_API_TOKEN=TOKEN,
            RECSYS_ENGINE="lexical",
            RECSYS_START_ENGINE=str(self.archive),
            RECSYS_DATA_DIR=str(folder / "api-data"),
            RECSYS_REQUEST_QUEUE=f"{name}.requests",
            RECSYS_BUILD_QUEUE=f"{name}.builds",
            RECSYS_BROADCAST_EXCHANGE=f"{name}.broadcast",
            RECSYS_HEARTBEAT_INTERVAL="1",
            RECSYS_CATCHUP_INTERVAL="3600",
            RECSYS_REQUEST_TIMEOUT="30",
            **(settings or {}),
        )
        self.api_workers, self.api_threads = api_workers, api_threads
        self.api = Api(folder / "api-1", self.env, workers=api_workers, threads=api_threads)
        self.apis = [self.api]
        self.pools = [Pool(folder / f"pool-{number}", dict(self.env, RECSYS_API_URL=self.api.url), processes)
                      for number in range(1, pools + 1)]
        self.processes = pools * processes
        #: Problems a client met that its status alone does not show (a 503 without Retry-After).
        self.checks: list[str] = []

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FaultStack:
        self._build_engine()
        forget_cluster_state(self.redis_url)
        self.amqp.start()
        self.redis.start()
        self.api.start()
        for pool in self.pools:
            pool.start()
        wait_until(self._answers, timeout=90, what=f"a 200 from POST /v1/recommendations\n{self.logs()}")
        wait_until(self._converged, timeout=60, what=f"{self.processes} worker processes serving the engine")
        return self

    def stop(self) -> None:
        for pool in self.pools:
            pool.stop()
        for api in self.apis:
            api.stop()
            api.client.close()
        self.amqp.stop()
        self.redis.stop()

    def __enter__(self) -> FaultStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _build_engine(self) -> None:
        if self.archive.exists():
            return
        from recsys.build import build_archive
        from recsys.config import Settings
        from recsys.registry import Registry
        from recsys.testing import sample_publications

        self.folder.mkdir(parents=True, exist_ok=True)
        build_archive(sample_publications(), self.archive, engine="lexical", registry=Registry.discover(),
                      settings=Settings())

    def _answers(self) -> bool:
        for pool in self.pools:
            if not pool.running:
                raise AssertionError(f"a worker pool exited:\n{pool.tail(60)}")
        return self.api.client.post("/v1/recommendations", json=QUERY).status_code == 200

    def _converged(self) -> bool:
        body = self.workers()
        return bool(body["converged"]) and len(body["workers"]) >= self.processes

    # -- what a scenario looks at ----------------------------------------------------

    def workers(self) -> dict[str, Any]:
        response = self.api.client.get("/v1/workers")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def engine(self) -> dict[str, Any]:
        response = self.api.client.get("/v1/engine")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def logs(self, lines: int = 40) -> str:
        parts = [f"--- {api.name} {api.log} ---\n{api.tail(lines)}" for api in self.apis]
        parts += [f"--- {pool.name} {pool.log} ---\n{pool.tail(lines)}" for pool in self.pools]
        return "\n".join(parts)

    def worker_log_marks(self) -> list[int]:
        return [len(pool.text()) for pool in self.pools]

    def worker_logs_since(self, marks: list[int]) -> str:
        return "".join(pool.text()[mark:] for pool, mark in zip(self.pools, marks, strict=True))

    def load(self, clients: int = CLIENTS) -> KeepAliveLoad:
        """Keep-alive clients asking for recommendations (not started)."""
        return KeepAliveLoad(self.api.url, lambda client: recommend(client, self.checks), clients=clients)


def recommend(client: httpx.Client, problems: list[str]) -> httpx.Response:
    response = client.post("/v1/recommendations", json=QUERY)
    if response.status_code == 503 and "Retry-After" not in response.headers:
        problems.append(f"503 without Retry-After: {response.text[:200]}")
    return response


# -- figures ---------------------------------------------------------------------------


def figures(fault: str, samples: list[Sample], start: float, end: float, **details: Any) -> FaultFigures:
    """The figures of a fault that lasted from ``start`` to ``end`` (equal for a drop)."""
    window = [s for s in samples if start - BEFORE <= s.started <= end + AFTER]
    during = [s for s in samples if start <= s.started and s.started + s.seconds < end]
    first_ok = [s for s in samples if s.started >= end and s.status == 200]
    recovery = min((s.started + s.seconds for s in first_ok), default=None)
    before = [s for s in samples if s.started < end]
    settled = max((s.started + s.seconds for s in before), default=end)
    return FaultFigures(
        fault=fault,
        requests=len(window),
        statuses=_counts(window),
        max_latency_s=max((s.seconds for s in window), default=0.0),
        recovery_s=None if recovery is None else recovery - end,
        settled_s=max(0.0, settled - end),
        fault_s=end - start,
        during=_counts(during),
        max_latency_during_s=max((s.seconds for s in during), default=0.0),
        details=details,
    )


def _counts(samples: list[Sample]) -> dict[str, int]:
    counts = Counter("error" if s.status is None else str(s.status) for s in samples)
    return dict(sorted(counts.items()))


def _run_load(stack: FaultStack, inject: Callable[[], tuple[float, float]], fault: str,
              clients: int, **details: Callable[[], Any]) -> tuple[FaultFigures, KeepAliveLoad]:
    load = stack.load(clients).start()
    try:
        load.wait_for(4 * clients, timeout=30)
        time.sleep(BEFORE)
        start, end = inject()
        time.sleep(AFTER)
        load.wait_for(clients, timeout=30)  # answers keep coming after the fault
    finally:
        load.stop()
    extra = {name: probe() for name, probe in details.items()}
    return figures(fault, list(load.samples), start, end, **extra), load


# -- scenarios -------------------------------------------------------------------------

_RESTARTS = re.compile(r"Restarting consumer in ([0-9.]+) seconds")
_OUTAGE_END = re.compile(r"reachable again after [0-9.]+ s: (\d+) results were lost, (\d+) tasks were skipped")


def close_rabbitmq_connections(stack: FaultStack, clients: int = CLIENTS) -> FaultFigures:
    """Close every AMQP connection of the API and the workers at once, under load."""
    marks = stack.worker_log_marks()
    dropped: list[int] = []

    def inject() -> tuple[float, float]:
        at = time.monotonic()
        dropped.append(stack.amqp.drop_connections())
        return at, at

    result, _ = _run_load(stack, inject, "all RabbitMQ connections closed", clients)
    logs = stack.worker_logs_since(marks)
    return _with(result, connections_dropped=dropped[0],
                 consumer_restarts=len(_RESTARTS.findall(logs)),
                 restart_delays_s=sorted({float(d) for d in _RESTARTS.findall(logs)}),
                 worker_critical=logs.count("[CRITICAL]"), worker_warnings=logs.count("[WARNING]"),
                 worker_log=logs)


def redis_outage(stack: FaultStack, seconds: float = 3.0, clients: int = CLIENTS) -> FaultFigures:
    """Redis refuses every connection for ``seconds`` (the proxy stops), then comes back."""
    marks = stack.worker_log_marks()

    def inject() -> tuple[float, float]:
        stack.redis.stop()
        start = time.monotonic()  # from here on every connection is refused
        time.sleep(seconds)
        stack.redis.start()
        return start, time.monotonic()

    result, _ = _run_load(stack, inject, "Redis down", clients)
    logs = stack.worker_logs_since(marks)
    ends = [(int(lost), int(skipped)) for lost, skipped in _OUTAGE_END.findall(logs)]
    return _with(result, worker_critical=logs.count("[CRITICAL]"), worker_warnings=logs.count("[WARNING]"),
                 results_warnings=logs.count("[recsys_workers.results] [WARNING]"),
                 tracebacks=logs.count("Traceback (most recent call last)"),
                 results_lost=sum(lost for lost, _ in ends), tasks_skipped=sum(skipped for _, skipped in ends),
                 worker_log=logs)


def kill_api_master(stack: FaultStack, restart_after: float = 1.0, clients: int = CLIENTS) -> FaultFigures:
    """``kill -9`` of gunicorn's master alone (its workers orphaned, as after an OOM kill),
    and a new master started ``restart_after`` seconds later on the same port."""
    old = stack.api
    orphans: list[int] = []

    def inject() -> tuple[float, float]:
        start = time.monotonic()
        os.kill(old.pid, signal.SIGKILL)
        assert old.popen is not None
        old.popen.wait(10)
        orphans.append(len(group_pids(old.pid)))
        time.sleep(restart_after)
        new = Api(stack.folder / f"api-{len(stack.apis) + 1}", stack.env, workers=stack.api_workers,
                  threads=stack.api_threads, port=old.port)
        stack.apis.append(new)
        new.start()  # returns once /health answers
        stack.api = new
        return start, time.monotonic()

    result, _ = _run_load(stack, inject, "API master killed", clients)
    wait_until(lambda: not group_pids(old.pid), timeout=30, what="the orphaned gunicorn workers to exit")
    return _with(result, orphans=orphans[0], binds=stack.api.starts,
                 connection_in_use="Connection in use" in stack.api.text())


def _with(result: FaultFigures, **details: Any) -> FaultFigures:
    return FaultFigures(**{**result.__dict__, "details": {**result.details, **details}})
