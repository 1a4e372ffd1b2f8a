"""The distributed stack on loopback, started with the commands of deploy/compose.yml.

:class:`Stack` runs the API (gunicorn), worker pools (the dramatiq CLI, one data dir
each: one "machine" per pool) and the scheduler (periodiq) as real processes, all
configured only by ``RECSYS_`` settings, as compose configures them. Its methods
talk to the API over HTTP and wait for states with deadlines.

The environment of every process sets every ``RECSYS_`` setting (defaults included),
so a developer's ``./.env`` cannot leak into the test. Queue and exchange names are
unique per stack, so stacks sharing this session's RabbitMQ vhost never meet.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from recsys.config import FIELDS
from tests.e2e import compose
from tests.support.processes import BIN, Process, free_port, recsys_env, wait_until

__all__ = ["TOKEN", "Stack", "flush_redis", "process_env", "processes_of"]

TOKEN = "e2e-test-token"


def process_env(settings: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment of a recsys process: this one's, minus any RECSYS_ variable,
    plus every setting's default, then ``settings`` and ``extra``; this interpreter's
    scripts first on PATH, and PYTHONPATH left as it is (the commands run as installed)."""
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    defaults = {field.env: field.default for field in FIELDS}
    return recsys_env(pythonpath=None, **{"PATH": path, **defaults, **settings, **extra})


def flush_redis(redis_url: str) -> None:
    """Empty this session's own Redis database (build lock, heartbeats, task records
    have fixed key names), so each stack starts from nothing; keeps the session's claim."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        claim = client.get("recsys-test-claim")
        client.flushdb()
        if claim is not None:
            client.set("recsys-test-claim", claim, ex=3600)
    finally:
        client.close()


def processes_of(argv: Sequence[str]) -> int:
    """The worker processes a ``dramatiq`` command line starts (its last ``--processes``)."""
    count = None
    for option, value in zip(argv, argv[1:], strict=False):
        if option in ("--processes", "-p"):
            count = int(value)
    assert count is not None, f"the worker command sets no --processes: {argv}"
    return count


class Stack:
    """API + worker pools + scheduler; nothing runs until :meth:`start`."""

    def __init__(
        self,
        folder: Path,
        *,
        broker_url: str,
        results_url: str,
        source: str = "",
        engine: str = "lexical",
        pools: Sequence[str] = ("a", "b"),
        worker_args: Sequence[str] = (),
        cron: str = "",
        api_workers: int = 2,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.api_url = f"http://127.0.0.1:{free_port()}"
        tag = f"e2e-{uuid.uuid4().hex[:8]}"
        common = {
            "RECSYS_BROKER_URL": broker_url,
            "RECSYS_RESULTS_URL": results_url,
            "RECSYS_API_URL": self.api_url,
            "RECSYS_API_TOKEN": TOKEN,
            "RECSYS_ENGINE": engine,
            "RECSYS_SOURCE": source,
            "RECSYS_REBUILD_CRON": cron,
            "RECSYS_REQUEST_QUEUE": f"{tag}.requests",
            "RECSYS_BUILD_QUEUE": f"{tag}.builds",
            "RECSYS_BROADCAST_EXCHANGE": f"{tag}.broadcast",
            "RECSYS_HEARTBEAT_INTERVAL": "1",
            "RECSYS_CATCHUP_INTERVAL": "10",
            "RECSYS_REQUEST_TIMEOUT": "20",
            "RECSYS_BUILD_LOCK_TTL": "10",
            "RECSYS_SOURCE_TIMEOUT": "20",
            "RECSYS_SOURCE_RETRIES": "2",
            **(settings or {}),
        }
        logs = folder / "logs"
        bind = self.api_url.removeprefix("http://")
        self.api = Process(
            "api", compose.command("api"),
            process_env(common, RECSYS_DATA_DIR=str(folder / "api"),
                        GUNICORN_CMD_ARGS=f"--bind {bind} --workers {api_workers}"),
            compose.ROOT, logs / "api.log",
        )
        #: Each pool's worker metrics port (pools of one host need one each).
        self.metrics_ports = {name: free_port() for name in pools}
        self.pools = {
            name: Process(
                f"pool-{name}", compose.command("worker", *worker_args),
                process_env(common, RECSYS_DATA_DIR=str(folder / f"machine-{name}"),
                            RECSYS_WORKER_METRICS_PORT=str(self.metrics_ports[name]),
                            RECSYS_WORKER_METRICS_HOST="127.0.0.1"),
                compose.ROOT, logs / f"pool-{name}.log",
            )
            for name in pools
        }
        self.scheduler = Process(
            "scheduler", compose.command("scheduler"),
            process_env(common, RECSYS_DATA_DIR=str(folder / "scheduler")),
            compose.ROOT, logs / "scheduler.log",
        )
        self.http = httpx.Client(base_url=self.api_url, timeout=60.0)

    @property
    def processes(self) -> list[Process]:
        return [self.api, *self.pools.values(), self.scheduler]

    def start(self, *, scheduler: bool = True) -> Stack:
        self.api.start()
        self.wait_healthy()
        for pool in self.pools.values():
            pool.start()
        if scheduler:
            self.scheduler.start()
        return self

    def close(self) -> None:
        for process in self.processes:
            process.kill9()
        self.http.close()

    def crashed(self) -> list[str]:
        """The components that were started and exited by themselves."""
        return [f"{p.name} (exit {p.returncode})" for p in self.processes if p.popen is not None and not p.running]

    # -- HTTP ------------------------------------------------------------------

    def wait_healthy(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.http.get("/health").status_code == 200, timeout=timeout, what="GET /health = 200")

    def engine(self) -> dict[str, Any] | None:
        """GET /v1/engine: the current engine's manifest, or None before the first."""
        response = self.http.get("/v1/engine")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def workers(self) -> dict[str, Any]:
        response = self.http.get("/v1/workers")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def recommend(self, **body: Any) -> httpx.Response:
        return self.http.post("/v1/recommendations", json=body)

    def recommendations(self, **body: Any) -> dict[str, Any]:
        """POST /v1/recommendations that must answer 200."""
        response = self.recommend(**body)
        assert response.status_code == 200, f"POST /v1/recommendations {body}: {response.status_code} {response.text}"
        data: dict[str, Any] = response.json()
        return data

    def trigger_build(self, timeout: float = 180.0) -> str:
        """POST /v1/engine/builds until it is accepted (409 while another build, e.g. a
        scheduled one, is queued or running); returns the task id."""

        def post() -> str | None:
            response = self.http.post("/v1/engine/builds", headers={"Authorization": f"Bearer {TOKEN}"})
            if response.status_code == 409:
                return None
            assert response.status_code == 202, f"POST /v1/engine/builds: {response.status_code} {response.text}"
            return str(response.json()["task_id"])

        return wait_until(post, timeout=timeout, what="POST /v1/engine/builds to be accepted", interval=1.0)

    def wait_task(self, task_id: str, timeout: float = 180.0) -> dict[str, Any]:
        """Poll GET /v1/tasks/{id} until the task has ended; returns the body."""

        def ended() -> dict[str, Any] | None:
            response = self.http.get(f"/v1/tasks/{task_id}")
            assert response.status_code == 200, f"GET /v1/tasks/{task_id}: {response.status_code} {response.text}"
            body: dict[str, Any] = response.json()
            return None if body["status"] == "pending" else body

        return wait_until(ended, timeout=timeout, what=f"task {task_id} to end", interval=0.5)

    def build(self, timeout: float = 180.0) -> dict[str, Any]:
        """Trigger a build and wait for it; returns the build's engine ``{name, version, generation}``."""
        task = self.wait_task(self.trigger_build(timeout), timeout)
        assert task["status"] == "succeeded", f"the build failed: {task}"
        engine: dict[str, Any] = task["result"]["engine"]
        return engine

    def wait_converged(self, generation: int, pools: Sequence[str] | None = None,
                       timeout: float = 120.0) -> dict[str, Any]:
        """Wait until GET /v1/workers shows every process of ``pools`` (default: the
        running ones), and only those, serving one current generation >= ``generation``."""
        names = [name for name, pool in self.pools.items() if pool.running] if pools is None else list(pools)

        def converged() -> dict[str, Any] | None:
            body = self.workers()
            group = set().union(*(self.pools[name].pids() for name in names))
            seen = [worker["pid"] for worker in body["workers"]]
            expected = sum(processes_of(self.pools[name].argv) for name in names)
            if not body["converged"] or body["generation"] < generation:
                return None
            # Exactly the pools' worker processes: a killed pool's heartbeats have expired.
            if len(seen) != expected or not set(seen) <= group:
                return None
            if any(worker["generation"] != body["generation"] for worker in body["workers"]):
                return None
            return body

        return wait_until(converged, timeout=timeout,
                          what=f"pools {names} to converge on generation {generation} or newer")
