"""Prometheus metrics of a worker pool, served on ``RECSYS_WORKER_METRICS_PORT`` (0: off).

==============================================  =========  ===========================================
metric                                          type       labels / meaning
==============================================  =========  ===========================================
``recsys_worker_tasks_total``                   counter    actor, outcome (succeeded, failed, skipped)
``recsys_worker_task_errors_total``             counter    actor, code: failed tasks by error code
``recsys_worker_task_duration_seconds``         histogram  actor, outcome
``recsys_worker_tasks_in_progress``             gauge      actor
``recsys_worker_processes``                     gauge      live worker processes of the pool
``recsys_worker_engine_load_seconds``           histogram  engine: loading an engine into a process
``recsys_worker_engine_generation``             gauge      pid: the generation each process serves
``recsys_worker_build_progress_done``           gauge      stage: the running build's count so far
``recsys_worker_build_progress_total``          gauge      stage: its total (absent when unknown)
``recsys_worker_build_progress_rate``           gauge      stage: per second
``recsys_worker_build_eta_seconds``             gauge      stage: time left at that rate
``recsys_worker_rollout_bytes``                 gauge      kind (needed, fetched, reused): the
                                                           machine's last rollout, from Redis
``recsys_worker_rollout_files``                 gauge      kind (needed, fetched)
``recsys_worker_rollout_seconds``               gauge      how long that rollout took (so far)
``recsys_worker_rollout_generation``            gauge      the generation it installs
``recsys_worker_rollout_state``                 gauge      state (fetching, done, failed): 1
==============================================  =========  ===========================================

**One endpoint per pool, its processes added up.** ``dramatiq recsys_workers
--processes P`` runs P worker processes, children of the command's main process. With
the port set, each of them keeps its values in files of prometheus-client's
multiprocess mode, in the pool's own folder (:func:`pool_folder`: named after the main
process, so two pools of one host never mix and a restarted pool starts from
nothing); one more child, started by dramatiq for this middleware (its ``forks``),
serves ``GET /metrics`` on the port and adds the files up, plus the machine's last
rollout (read from Redis at each scrape). Gauges of dead processes are dropped at
each scrape. Give each pool of one host its own port.

Dramatiq's own ``Prometheus`` middleware does not fit: every pool of a host shares one
folder (``dramatiq_prom_db``) and one port (9191, so a second pool's server fails with
"Address already in use", Bogdanp/dramatiq#280), it binds 0.0.0.0 whatever is asked
(#309), and it has no outcome label.

Outside the ``dramatiq`` command (``recsys serve``, tests) the middleware does nothing
unless asked (``serve=True``), so that it never changes how another part of the
process counts.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dramatiq import Broker, Middleware, Worker
from dramatiq.middleware import TimeLimitExceeded
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recsys import protocol
from recsys.cluster import Rollouts
from recsys.config import Settings
from recsys.errors import RecsysError
from recsys.kv import KV, open_kv
from recsys.progress import ProgressRecord
from recsys_workers.services import WorkerServices

__all__ = [
    "MetricsServer",
    "WorkerMetrics",
    "WorkerMetricsMiddleware",
    "pool_folder",
    "scrape_registry",
    "serve_pool_metrics",
    "use_multiprocess_files",
]

logger = logging.getLogger(__name__)

TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0)
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Where the pools' folders go: ``<tmp>/recsys-worker-metrics/<main pid>-<its start time>``.
FOLDERS = "recsys-worker-metrics"


class WorkerMetrics:
    """The metrics of one worker process (see the module doc), in ``registry``.

    In multiprocess mode (:func:`use_multiprocess_files` first) their values go to the
    pool's folder whatever the registry; otherwise read them from ``registry``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.tasks = Counter("recsys_worker_tasks", "tasks run, by actor and outcome", ["actor", "outcome"],
                             registry=r)
        self.task_errors = Counter("recsys_worker_task_errors", "failed tasks, by actor and error code",
                                   ["actor", "code"], registry=r)
        self.duration = Histogram("recsys_worker_task_duration_seconds", "time to run a task", ["actor", "outcome"],
                                  buckets=TASK_BUCKETS, registry=r)
        self.in_progress = Gauge("recsys_worker_tasks_in_progress", "tasks running now", ["actor"],
                                 multiprocess_mode="livesum", registry=r)
        self.processes = Gauge("recsys_worker_processes", "live worker processes of the pool",
                               multiprocess_mode="livesum", registry=r)
        self.engine_load = Histogram("recsys_worker_engine_load_seconds", "time to load an engine into a process",
                                     ["engine"], buckets=LOAD_BUCKETS, registry=r)
        self.generation = Gauge("recsys_worker_engine_generation", "the engine generation a process serves",
                                multiprocess_mode="liveall", registry=r)
        self.build_done = Gauge("recsys_worker_build_progress_done", "the running build's count so far, by stage",
                                ["stage"], multiprocess_mode="livemostrecent", registry=r)
        self.build_total = Gauge("recsys_worker_build_progress_total", "the running build's total, by stage",
                                 ["stage"], multiprocess_mode="livemostrecent", registry=r)
        self.build_rate = Gauge("recsys_worker_build_progress_rate", "the running build's rate per second, by stage",
                                ["stage"], multiprocess_mode="livemostrecent", registry=r)
        self.build_eta = Gauge("recsys_worker_build_eta_seconds", "seconds the running build's stage still needs",
                               ["stage"], multiprocess_mode="livemostrecent", registry=r)
        self._served: int | None = None

    def task_finished(self, actor: str, outcome: str, seconds: float | None, code: str | None = None) -> None:
        self.tasks.labels(actor, outcome).inc()
        if code is not None:
            self.task_errors.labels(actor, code).inc()
        if seconds is not None:
            self.duration.labels(actor, outcome).observe(seconds)

    def engine_loaded(self, engine: str, seconds: float) -> None:
        self.engine_load.labels(engine).observe(seconds)

    def serving(self, generation: int | None) -> None:
        if generation is not None and generation != self._served:
            self.generation.set(generation)
            self._served = generation

    def build_progress(self, record: ProgressRecord) -> None:
        self.build_done.labels(record.stage).set(record.done)
        if record.total is not None:
            self.build_total.labels(record.stage).set(record.total)
        self.build_rate.labels(record.stage).set(record.rate)
        if record.eta_s is not None:
            self.build_eta.labels(record.stage).set(record.eta_s)


# -- the pool's folder ----------------------------------------------------------------


def _start_time(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot, Linux), or "" when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def pool_folder(main_pid: int | None = None, base: Path | None = None) -> Path:
    """The folder of the pool whose main process is ``main_pid`` (default: this process's
    parent, the ``dramatiq`` command): the same for its worker processes and its
    metrics server, and new for every start of the command."""
    pid = os.getppid() if main_pid is None else main_pid
    started = _start_time(pid)
    root = (base if base is not None else Path(tempfile.gettempdir())) / FOLDERS
    return root / (f"{pid}-{started}" if started else str(pid))


def use_multiprocess_files(folder: Path) -> None:
    """Make the metrics this process creates from now on keep their values in files
    under ``folder`` (prometheus-client's multiprocess mode)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_dead_gauges(folder: Path) -> None:
    from prometheus_client import multiprocess

    pids = set()
    for path in folder.glob("gauge_live*_*.db"):
        with contextlib.suppress(ValueError):
            pids.add(int(path.stem.rsplit("_", 1)[1]))
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


def _drop_dead_folders(folder: Path) -> None:
    """Remove the folders of pools whose main process is gone."""
    for other in folder.parent.glob("*"):
        if other == folder or not other.is_dir():
            continue
        with contextlib.suppress(ValueError):
            if not _alive(int(other.name.split("-", 1)[0])):
                shutil.rmtree(other, ignore_errors=True)


# -- the middleware (in each worker process) --------------------------------------------


def running_under_dramatiq(argv: list[str] | None = None) -> bool:
    """Whether this is a worker process of the ``dramatiq`` command (a child of its main process)."""
    args = sys.argv if argv is None else argv
    if not args or multiprocessing.parent_process() is None:
        return False
    program = Path(args[0])
    return program.name == "dramatiq" or (program.parent.name == "dramatiq" and program.stem == "__main__")


def _outcome(result: Any, exception: BaseException | None) -> tuple[str, str | None]:
    if exception is not None:
        if isinstance(exception, RecsysError):
            return "failed", exception.code
        return "failed", "timeout" if isinstance(exception, TimeLimitExceeded) else "internal"
    error = protocol.error_of(result)
    if error is not None:
        return "failed", error["code"]
    return "succeeded", None


class WorkerMetricsMiddleware(Middleware):
    """Counts and times every task, and samples the engine this process serves.

    ``serve``: whether this pool serves metrics (default: under the ``dramatiq``
    command with ``RECSYS_WORKER_METRICS_PORT`` not 0); ``folder``: where the values go
    (default :func:`pool_folder`).
    """

    def __init__(self, services: WorkerServices, *, serve: bool | None = None, folder: Path | None = None) -> None:
        self.services = services
        port = services.settings.worker_metrics_port
        self.serve = (port != 0 and running_under_dramatiq()) if serve is None else serve
        self.folder = folder
        self.metrics: WorkerMetrics | None = None
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._sampler: _Sampler | None = None

    @property
    def forks(self) -> list[Any]:
        return [serve_pool_metrics] if self.metrics is not None and running_under_dramatiq() else []

    def after_process_boot(self, broker: Broker) -> None:
        if not self.serve or self.metrics is not None:
            return
        self.folder = self.folder if self.folder is not None else pool_folder()
        use_multiprocess_files(self.folder)
        self.metrics = WorkerMetrics()
        self.metrics.processes.set(1)
        self.services.metrics = self.metrics

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        if self.metrics is not None:
            self._sampler = _Sampler(self.services, self.metrics)
            self._sampler.start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if self.metrics is not None and self.folder is not None:
            from prometheus_client import multiprocess

            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(os.getpid(), str(self.folder))  # type: ignore[no-untyped-call]

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if self.metrics is None:
            return
        with self._lock:
            self._started[message.message_id] = time.monotonic()
        self.metrics.in_progress.labels(message.actor_name).inc()

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._finished(message, *_outcome(result, exception))

    def after_skip_message(self, broker: Broker, message: Any) -> None:
        self._finished(message, "skipped", None)

    def _finished(self, message: Any, outcome: str, code: str | None) -> None:
        if self.metrics is None:
            return
        with self._lock:
            started = self._started.pop(message.message_id, None)
        if started is not None:
            self.metrics.in_progress.labels(message.actor_name).dec()
        seconds = None if started is None else time.monotonic() - started
        self.metrics.task_finished(message.actor_name, outcome, seconds, code)
        _sample(self.services, self.metrics)


def _sample(services: WorkerServices, metrics: WorkerMetrics) -> None:
    loaded = services.loaded()
    metrics.serving(None if loaded is None else loaded.generation)


class _Sampler(threading.Thread):
    """Samples the generation this process serves (an engine may be swapped in between tasks)."""

    def __init__(self, services: WorkerServices, metrics: WorkerMetrics) -> None:
        super().__init__(name="metrics-sampler", daemon=True)
        self.services = services
        self.metrics = metrics
        self.interval = float(services.settings.heartbeat_interval)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                _sample(self.services, self.metrics)
            except Exception:
                logger.debug("sampling the served engine failed", exc_info=True)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()


# -- the server (one process per pool) ------------------------------------------------


class _RolloutCollector(Collector):
    """The machine's last rollout (``recsys.cluster.Rollouts``), read at scrape time."""

    def __init__(self, kv: KV, host: str, data_dir: str) -> None:
        self.kv = kv
        self.host = host
        self.data_dir = data_dir

    def _mine(self, record: Mapping[str, Any]) -> bool:
        if record.get("host") != self.host:
            return False
        recorded = record.get("data_dir")
        return recorded is None or str(recorded) == self.data_dir or str(recorded).startswith(self.data_dir + os.sep)

    def collect(self) -> Iterator[Metric]:
        try:
            mine = [r for r in Rollouts(self.kv).live() if self._mine(r)]
        except RecsysError as exc:
            logger.debug("no rollout metrics: %s", exc)
            return
        if not mine:
            return
        record = max(mine, key=lambda r: str(r.get("updated_at") or ""))
        size = GaugeMetricFamily("recsys_worker_rollout_bytes", "the machine's last rollout: bytes", labels=["kind"])
        for kind in ("needed", "fetched", "reused"):
            size.add_metric([kind], float(record.get(f"bytes_{kind}") or 0))
        files = GaugeMetricFamily("recsys_worker_rollout_files", "the machine's last rollout: files", labels=["kind"])
        for kind in ("needed", "fetched"):
            files.add_metric([kind], float(record.get(f"files_{kind}") or 0))
        seconds = GaugeMetricFamily("recsys_worker_rollout_seconds", "how long the machine's last rollout took")
        seconds.add_metric([], float(record.get("seconds") or 0.0))
        generation = GaugeMetricFamily("recsys_worker_rollout_generation", "the generation of the last rollout")
        generation.add_metric([], float(record.get("generation") or 0))
        state = GaugeMetricFamily("recsys_worker_rollout_state", "the last rollout's state (1)", labels=["state"])
        state.add_metric([str(record.get("state") or "unknown")], 1.0)
        yield from (size, files, seconds, generation, state)


def scrape_registry(folder: Path, extra: list[Collector] | None = None) -> CollectorRegistry:
    """A registry adding up the values every process wrote under ``folder``."""
    from prometheus_client import multiprocess

    _drop_dead_gauges(folder)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    for collector in extra or []:
        registry.register(collector)
    return registry


class MetricsServer:
    """``GET /metrics`` on ``host:port``: the sum of a pool's processes (``folder``) and
    the machine's last rollout (when a KV is given)."""

    def __init__(self, folder: Path, host: str, port: int, *, kv: KV | None = None, data_dir: str = "") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.extra: list[Collector] = []
        if kv is not None:
            self.extra.append(_RolloutCollector(kv, socket.gethostname(), data_dir))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404, "metrics are at /metrics")
                    return
                body = generate_latest(scrape_registry(server.folder, server.extra))
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                logger.debug(format, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_pool_metrics() -> int:
    """The pool's metrics server: a dramatiq fork process (the middleware's ``forks``)."""
    settings = Settings.from_env()
    folder = pool_folder()
    _drop_dead_folders(folder)
    kv = open_kv(None if settings.embedded else settings.results_url)
    try:
        server = MetricsServer(folder, settings.worker_metrics_host, settings.worker_metrics_port, kv=kv,
                               data_dir=str(settings.data_dir))
    except OSError as exc:
        logger.error(
            "cannot serve worker metrics on %s:%d (%s): give each pool of one host its own "
            "RECSYS_WORKER_METRICS_PORT, or 0 to serve none", settings.worker_metrics_host,
            settings.worker_metrics_port, exc,
        )
        return 1
    logger.info("serving this pool's metrics on http://%s:%d/metrics", settings.worker_metrics_host, server.port)
    try:
        server.serve_forever()
    finally:
        kv.close()
    return 0
