"""The embedded one-process server behind ``recsys serve`` (see :mod:`recsys.cli.serve`).

:class:`EmbeddedServer` runs, in this process: the HTTP API (the same Falcon app as
under gunicorn, :func:`recsys_api.app.create_app`) on cheroot's threaded WSGI server; a
Dramatiq worker with the same actors and middleware
(:func:`recsys_workers.app.create_worker_app`) on an in-process ``StubBroker`` with
results in memory (a waiting request wakes as soon as its result is stored; expired
results are dropped); and, with ``RECSYS_REBUILD_CRON``, a :class:`CronThread` that
sends ``scheduled_build`` at each tick (periodiq's cron rules), as ``periodiq
recsys_workers`` does. They share one in-memory KV (task records, build lock,
heartbeats). This module imports neither dramatiq nor falcon itself: recsys/ may only
reach them through recsys_api and recsys_workers, and only lazily.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recsys.config import Settings
from recsys.errors import ConfigError, RecsysError

__all__ = [
    "DISTRIBUTED_COMMANDS",
    "CronThread",
    "EmbeddedServer",
    "StartOutcome",
    "loopback_url",
    "refusal",
]

logger = logging.getLogger("recsys.serve")

#: Seconds the HTTP server gets to finish its requests at shutdown (the worker still runs).
SHUTDOWN_SECONDS = 5
#: Milliseconds the worker then gets to finish its tasks; a build is not waited for.
WORKER_STOP_MS = 2000
#: How often idle worker and consumer threads look at the stop flag (a message wakes them at once).
WORKER_POLL_MS = 250

#: The commands of the distributed stack, one per component.
DISTRIBUTED_COMMANDS = (
    ("API", "gunicorn -c deploy/gunicorn.conf.py recsys_api.wsgi:app"),
    ("worker pool", "dramatiq recsys_workers --processes 2 --threads 2"),
    ("scheduler", "periodiq recsys_workers"),
)


def refusal(settings: Settings) -> str:
    """What ``recsys serve`` says when a broker is configured."""
    lines = [
        "RECSYS_BROKER_URL is set, so this is a distributed deployment, and 'recsys serve' only runs "
        "the embedded one-process mode (no RabbitMQ, no Redis).",
        "Run each component with the same RECSYS_ settings instead:",
    ]
    width = max(len(name) for name, _ in DISTRIBUTED_COMMANDS)
    lines += [f"  {name:<{width}}  {command}" for name, command in DISTRIBUTED_COMMANDS]
    lines += [
        "or the whole stack with Docker Compose: cp .env.example .env && docker compose -f deploy/compose.yml up",
        "(see docs/operations.md). To use the embedded mode, unset RECSYS_BROKER_URL.",
    ]
    return "\n".join(lines)


def loopback_url(host: str, port: int) -> str:
    """A URL of this server that this process can reach (the worker uploads through it)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True)
class StartOutcome:
    """What the start step did: ``present``, ``installed``, ``build sent``, ``build busy``
    or ``build not sent``; ``task_id`` is the build's when one was sent."""

    what: str
    task_id: str | None = None


class EmbeddedServer:
    """The API, a worker and the scheduler of one process (see the module doc).

    ``start()`` binds ``host:port`` (port 0: any free port, see :attr:`url`), starts
    everything and runs the start-engine step; ``stop()`` shuts it all down. The
    object can be used from tests and benchmarks; :func:`run` adds the console
    output and the signal handling of the command.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        threads: int = 16,
        worker_threads: int = 2,
    ) -> None:
        if not settings.embedded:
            raise ConfigError(refusal(settings))
        if not 0 <= port <= 65535:
            raise ConfigError(f"--port {port} is not a TCP port: use 1-65535 (or 0 for any free port)")
        if threads < 1 or worker_threads < 1:
            raise ConfigError("--threads and --worker-threads must be at least 1")
        self.host = host
        self.token_generated = not settings.api_token
        token = settings.api_token or secrets.token_urlsafe(24)
        self.settings = settings.replace(api_token=token)
        self._port = port
        self._threads = threads
        self._worker_threads = worker_threads
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._worker: Any = None
        self._worker_app: Any = None
        self._tasks: Any = None
        self._scheduler: CronThread | None = None
        self._resend_stop = threading.Event()
        self.archives: Any = None
        self.start_outcome = StartOutcome("not started")

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return int(self._server.bind_addr[1])

    @property
    def url(self) -> str:
        """The server's base URL, as reachable from this machine."""
        return loopback_url(self.host, self.port)

    @property
    def results(self) -> Any:
        """The in-memory result backend (its size shows the results kept)."""
        return self._worker_app.results

    def start(self) -> StartOutcome:
        """Bind, start the HTTP server, the worker and the scheduler, then make sure an
        engine exists or is being built. Raises RecsysError when it cannot start."""
        self._bind()
        try:
            self._start_components()
        except BaseException:
            self.stop()
            raise
        return self.start_outcome

    def _bind(self) -> None:
        from cheroot import wsgi

        self._check_address()
        server = wsgi.Server(
            (self.host, self._port), _not_ready, numthreads=self._threads,
            request_queue_size=128, shutdown_timeout=SHUTDOWN_SECONDS, server_name="recsys",
        )
        try:
            server.prepare()  # binds now, so the worker's API URL can carry the real port
        except OSError as exc:
            raise self._cannot_listen(exc) from exc
        self._server = server
        self.settings = self.settings.replace(api_url=self.url)

    def _check_address(self) -> None:
        """Fail early, with a clear message, when ``host:port`` cannot be bound."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            socket.create_server((self.host, self._port), family=family).close()
        except OSError as exc:
            raise self._cannot_listen(exc) from exc

    def _cannot_listen(self, exc: OSError) -> RecsysError:
        return RecsysError(
            f"cannot listen on {self.host}:{self._port}: {exc.strerror or exc}; "
            "is another server using that port? Choose another one with --port"
        )

    def _start_components(self) -> None:
        from recsys.cluster import TaskRecords
        from recsys.kv import MemoryKV
        from recsys_api.app import create_app
        from recsys_api.broadcast import BrokerBroadcaster
        from recsys_api.services import open_archive_store
        from recsys_api.tasks import TaskClient
        from recsys_workers.app import create_worker_app

        settings = self.settings
        logging.getLogger("httpx").setLevel(logging.WARNING)  # the worker's calls to this same API
        kv = MemoryKV()
        self._worker_app = worker_app = create_worker_app(settings, kv=kv)
        broker = worker_app.broker
        self.archives = open_archive_store(settings)
        broadcaster = BrokerBroadcaster(broker, settings.broadcast_exchange)
        self._tasks = TaskClient(broker, worker_app.results, TaskRecords(kv, settings.result_ttl),
                                 result_ttl=settings.result_ttl)
        app = create_app(
            settings, broker=broker, result_backend=worker_app.results, kv=kv,
            archive_store=self.archives, broadcaster=broadcaster, resend=True, resend_stop=self._resend_stop,
        )
        self._server.wsgi_app = app
        self._server_thread = threading.Thread(target=self._server.serve, name="http", daemon=True)
        self._server_thread.start()

        self._worker = worker_app.start_worker(self._worker_threads, poll_ms=WORKER_POLL_MS)

        if settings.rebuild_cron:
            actor = worker_app.actors.scheduled_build
            self._scheduler = CronThread(actor.options["periodic"], actor.send_with_options)
            self._scheduler.start()
        self.start_outcome = self._start_engine(kv, broadcaster)

    def _start_engine(self, kv: Any, broadcaster: Any) -> StartOutcome:
        """The API's start step (install RECSYS_START_ENGINE or send one build),
        remembering the id of the build it sends."""
        from recsys.cluster import BuildLock
        from recsys_api import startup
        from recsys_api.builds import BuildStarter

        settings = self.settings

        class Recording(BuildStarter):
            sent: str | None = None

            def start(self, *, force: bool = False) -> str:
                self.sent = super().start(force=force)
                return self.sent

        builds = Recording(self._tasks, BuildLock(kv, settings.build_lock_ttl), settings.build_queue)
        what = startup.start_engine(self.archives, builds, broadcaster, settings.start_engine)
        return StartOutcome(what, builds.sent)

    def wait_for_build(self, task_id: str, timeout: float, stop: threading.Event | None = None) -> Any:
        """The result of build ``task_id`` (a dict, maybe an error result), or None when
        ``timeout`` seconds pass or ``stop`` is set first."""
        from recsys import protocol
        from recsys.errors import WaitTimeout

        message = self._tasks.message(protocol.BUILD_ACTOR, self.settings.build_queue).copy(message_id=task_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            try:
                return self._tasks.wait(message, 1)
            except WaitTimeout:
                continue
        return None

    def stop(self) -> None:
        """Stop the scheduler, the HTTP server (finishing its requests) and the worker.
        Safe to call more than once."""
        self._resend_stop.set()  # the re-sending of pending live-update applies
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._server is not None:
            try:
                self._server.stop()
            except OSError as exc:
                logger.warning("stopping the HTTP server: %s", exc)
        if self._server_thread is not None:
            self._server_thread.join(SHUTDOWN_SECONDS)
            self._server_thread = None
        if self._worker is not None:
            # A running build is not waited for: its worker thread is a daemon, and the
            # next build removes what it left under <data_dir>/builds.
            self._worker.stop(timeout=WORKER_STOP_MS)
            self._worker = None
        if self._worker_app is not None:
            self._worker_app.close()
            self._worker_app = None


def _not_ready(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The WSGI app between bind and start (never seen: nothing is served yet)."""
    start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Retry-After", "1")])
    return [b"starting\n"]


class CronThread(threading.Thread):
    """Calls ``send(scheduled_at=...)`` at every tick of ``spec`` (a periodiq CronSpec)
    until stopped. The tick's time goes with the message, as periodiq sends it, so the
    ``scheduled_build`` actor claims each tick once."""

    def __init__(self, spec: Any, send: Callable[..., Any]) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.spec = spec
        self.send = send
        self._stopped = threading.Event()

    def next_tick(self) -> Any:
        import pendulum

        return self.spec.next_valid_date(pendulum.now())

    def run(self) -> None:
        import pendulum

        while True:
            tick = self.next_tick()
            logger.info("scheduler: next scheduled build at %s", tick)
            while (left := (tick - pendulum.now()).total_seconds()) > 0:
                if self._stopped.wait(min(left, 60.0)):
                    return
            try:
                self.send(scheduled_at=str(tick))
            except Exception:
                logger.exception("scheduler: sending the scheduled build of %s failed", tick)

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(SHUTDOWN_SECONDS)
