"""Helpers of the API integration tests: real processes (gunicorn with the deploy config,
``dramatiq recsys_workers``, a private ``redis-server``), each in its own process group
with its output in a log file, stopped by the fixtures that start them."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import httpx

from tests.support.processes import BIN, ROOT, Process, free_port, wait_until

TOKEN = "integration-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api(Process):
    """``gunicorn -c deploy/gunicorn.conf.py recsys_api.wsgi:app``, bound by GUNICORN_CMD_ARGS."""

    def __init__(self, folder: Path, env: dict[str, str], *, workers: int = 2, threads: int = 8,
                 port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_dir = folder / "prometheus"
        env = dict(env, GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{self.port} --workers {workers} --threads {threads}",
                   PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir), RECSYS_API_URL=self.url)
        argv = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "recsys_api.wsgi:app"]
        super().__init__("api", argv, env, ROOT, folder / "api.log")
        self.client = httpx.Client(base_url=self.url, timeout=70)

    def start(self) -> Api:
        super().start()
        wait_until(self._healthy, timeout=60, what=f"the API at {self.url} (log: {self.log})")
        return self

    def _healthy(self) -> bool:
        if not self.running:
            raise AssertionError(f"gunicorn exited:\n{self.text()[-3000:]}")
        try:
            return self.client.get("/health").status_code == 200
        except httpx.TransportError:
            return False


class Pool(Process):
    """``dramatiq recsys_workers --processes N --threads 2`` on its own data dir."""

    def __init__(self, folder: Path, env: dict[str, str], processes: int = 1) -> None:
        data = folder / "worker-data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [str(BIN / "dramatiq"), "recsys_workers", "--processes", str(processes), "--threads", "2"]
        super().__init__("workers", argv, dict(env, RECSYS_DATA_DIR=str(data)), ROOT,
                         folder / "workers.log")


class RedisServer(Process):
    """A private ``redis-server`` on a free port (no persistence), to stop and restart."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        binary = shutil.which("redis-server") or "redis-server"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(folder)]
        super().__init__("redis", argv, dict(os.environ), ROOT, folder / "redis.log")

    def start(self) -> RedisServer:
        super().start()
        wait_until(self._up, timeout=20, what=f"redis-server on port {self.port}")
        return self

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False
