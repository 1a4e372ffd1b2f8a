"""Real processes for the integration and end-to-end tests: each started in its own
session (process group), logged to a file, stopped or killed with all its children;
and polling with a deadline.

Every :class:`Process` is listed in :data:`KNOWN` (the e2e conftest prints the tail of
each log written during a failed test) and, while it may be running, in
:data:`STARTED` (the e2e conftest kills what is left at the end of the session).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["BIN", "KNOWN", "ROOT", "STARTED", "Process", "free_port", "group_pids", "recsys_env", "wait_until"]

T = TypeVar("T")

#: The repository root.
ROOT = Path(__file__).resolve().parents[2]
#: The folder of this interpreter's scripts (gunicorn, dramatiq, periodiq, recsys).
BIN = Path(sys.executable).parent

#: Every process created, in order.
KNOWN: list[Process] = []
#: Processes started and not yet killed, in start order.
STARTED: list[Process] = []


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(probe: Callable[[], T], *, what: str, timeout: float = 60.0, interval: float = 0.25) -> T:
    """Call ``probe`` until it returns something truthy, and return that; fail with
    ``what`` and the last value or exception after ``timeout`` seconds. An
    AssertionError raised by ``probe`` fails at once; other exceptions (a service
    starting, or cut off) are retried."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except AssertionError:
            raise
        except Exception as exc:  # the service may be starting or cut off: keep polling
            last = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


#: This checkout and its plugins, ahead of whatever copy of them is installed.
CHECKOUT_PATH = os.pathsep.join([str(ROOT), *(str(p) for p in sorted((ROOT / "plugins").glob("recsys-engine-*")))])


def recsys_env(*, pythonpath: str | None = CHECKOUT_PATH, drop: Sequence[str] = (), **settings: str) -> dict[str, str]:
    """The environment of a recsys process: this one's, without RECSYS_ variables,
    GUNICORN_CMD_ARGS and variables starting with one of ``drop``; offline Hugging
    Face, unbuffered output, PYTHONPATH set to ``pythonpath`` (None: left as it is), no
    worker metrics server (many pools share this host: a test that wants one gives it a
    port); then ``settings``."""
    prefixes = ("RECSYS_", *drop)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(prefixes) and key != "GUNICORN_CMD_ARGS"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", RECSYS_WORKER_METRICS_PORT="0")
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    env.update(settings)
    return env


def group_pids(pgid: int) -> set[int]:
    """The live processes of process group ``pgid`` (from /proc)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields: state ppid pgrp ...; a zombie has exited already.
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.add(int(entry.name))
    return pids


class Process:
    """One command line, run in a new session (so a signal reaches all its children),
    its output appended to ``log``."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        KNOWN.append(self)

    def start(self) -> Process:
        assert not self.running, f"{self.name} is already running"
        self.starts += 1
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            log.write(f"\n===== {self.name} start {self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        if self not in STARTED:
            STARTED.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def pids(self) -> set[int]:
        """The live processes of this command (its process group)."""
        return group_pids(self.pid) if self.popen is not None else set()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the command's whole process group."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def kill9(self) -> None:
        """kill -9 of the whole process group, then reap the leader and wait until
        every process of the group has gone."""
        if self.popen is None:
            return
        self.signal(signal.SIGKILL)
        self.popen.wait(30)
        wait_until(lambda: not self.pids(), timeout=30, what=f"every process of {self.name} to exit")
        if self in STARTED:
            STARTED.remove(self)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to the group; kill -9 of what is left of it after ``timeout``
        seconds. Returns the exit code (None if it never started)."""
        if self.popen is None:
            return None
        if self.running:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        code = self.popen.poll()
        self.kill9()  # whatever is left of the group
        return code

    def restart(self) -> Process:
        if self.running:
            self.kill9()
        return self.start()

    def text(self) -> str:
        """Everything in the log so far."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.text().splitlines()[-lines:])


def forget_cluster_state(redis_url: str) -> None:
    """The session's Redis database is shared by the integration modules, one after the
    other: drop the recsys:* keys (heartbeats, task records, build markers) another left."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match="recsys:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
