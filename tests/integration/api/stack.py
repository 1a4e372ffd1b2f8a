"""Helpers of the API integration tests: real processes (gunicorn with the deploy config,
``dramatiq recsys_workers``, a private ``redis-server``), each in its own process group
with its output in a log file, stopped by the fixtures that start them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
TOKEN = "integration-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def recsys_env(**settings: str) -> dict[str, str]:
    """This process's environment without RECSYS_ variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_") and k != "GUNICORN_CMD_ARGS"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    env.update(settings)
    return env


class Process:
    """A command in its own session (so its children stop with it); output in ``log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            out.write(f"\n===== {self.name}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=out, stderr=out,
                                          start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, SIGKILL if it is still there after ``timeout``."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(30)
            except ProcessLookupError:
                pass
        self.popen = None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Api(Process):
    """``gunicorn -c deploy/gunicorn.conf.py recsys_api.wsgi:app``, bound by GUNICORN_CMD_ARGS."""

    def __init__(self, folder: Path, env: dict[str, str], *, workers: int = 2, threads: int = 8) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_dir = folder / "prometheus"
        env = dict(env, GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{self.port} --workers {workers} --threads {threads}",
                   PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir), RECSYS_API_URL=self.url)
        argv = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "recsys_api.wsgi:app"]
        super().__init__("api", argv, env, folder / "api.log")
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

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)


class Pool(Process):
    """``dramatiq recsys_workers --processes N --threads 2`` on its own data dir."""

    def __init__(self, folder: Path, env: dict[str, str], processes: int = 1) -> None:
        data = folder / "worker-data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [str(BIN / "dramatiq"), "recsys_workers", "--processes", str(processes), "--threads", "2"]
        super().__init__("workers", argv, dict(env, RECSYS_DATA_DIR=str(data)), folder / "workers.log")


class RedisServer(Process):
    """A private ``redis-server`` on a free port (no persistence), to stop and restart."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        binary = shutil.which("redis-server") or "redis-server"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(folder)]
        super().__init__("redis", argv, dict(os.environ), folder / "redis.log")

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
