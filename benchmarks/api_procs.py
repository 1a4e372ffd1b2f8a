"""Process and service helpers of ``benchmarks/api.py``: a private RabbitMQ vhost and a
free Redis database, processes in their own process groups, waiting for HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

AMQP = os.environ.get("RECSYS_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672")
REDIS = os.environ.get("RECSYS_BENCH_REDIS", "redis://127.0.0.1:6379")
CLAIM_KEY = "recsys-test-claim"  # the same claim the test fixtures use, so nobody shares a database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of this run (``rabbitmqctl``), deleted at the end; yields its name."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise SystemExit("rabbitmqctl is needed to create a private RabbitMQ vhost for the benchmark")
    vhost = f"recsys-bench-api-{uuid.uuid4().hex[:6]}"
    subprocess.run([ctl, "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True, timeout=60)
    try:
        yield vhost
    finally:
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, timeout=60)


def amqp_url(vhost: str) -> str:
    return f"{AMQP}/{quote(vhost, safe='')}"


@contextlib.contextmanager
def private_redis_db() -> Iterator[str]:
    """The first Redis database 1..15 nobody has claimed; flushed before and after."""
    import redis

    claim = f"bench-api:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        if client.set(CLAIM_KEY, claim, nx=True, ex=7200):
            client.flushdb()
            client.set(CLAIM_KEY, claim, ex=7200)
            try:
                yield f"{REDIS}/{db}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise SystemExit("no free Redis database among 1..15 (all claimed by test sessions)")


def flush_keeping_claim(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        claim = client.get(CLAIM_KEY)
        client.flushdb()
        if claim is not None:
            client.set(CLAIM_KEY, claim, ex=7200)
    finally:
        client.close()


class Proc:
    """A command in its own session: stopping it stops its children (gunicorn/dramatiq workers)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name, self.argv, self.env, self.cwd, self.log = name, argv, env, cwd, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=out,
                                          start_new_session=True)
        return self

    @property
    def pgid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(20)


def wait_post(url: str, body: dict, timeout: float, procs: list[Proc]) -> None:
    """POST until a 2xx comes back (the stack works end to end)."""
    deadline, last = time.monotonic() + timeout, ""
    data = json.dumps(body).encode()
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.popen is not None and proc.popen.poll() is not None:
                raise SystemExit(f"{proc.name} exited; see {proc.log}")
        try:
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {url}: {last}")
