"""Helpers of the worker integration tests: real `dramatiq recsys_workers` pools (one
data dir each: a "machine"), `periodiq` schedulers, broadcasts published as the API
does, RabbitMQ queue listings, heartbeats, and polling with a deadline."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import dramatiq
import pika

from recsys import protocol
from recsys.cluster import Heartbeats
from recsys.kv import RedisKV

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
EXCHANGE = "recsys.broadcast"
T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 60.0, what: str = "the condition",
               interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")


def write_test_plugins(folder: Path) -> Path:
    """A folder holding the dist-info of a test distribution that registers the
    ``gated`` engine (tests.integration.workers.gated:GatedEngine); put it on PYTHONPATH."""
    info = folder / "recsys_test_engines-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: recsys-test-engines\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text(
        "[recsys.engines]\ngated = tests.integration.workers.gated:GatedEngine\n"
    )
    return folder


def base_env(**settings: str) -> dict[str, str]:
    """The environment of a recsys process: this one's, minus any RECSYS_ variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_") and not k.startswith("TESTENGINE_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


class Process:
    """A command in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name, self.argv, self.env, self.cwd, self.log = name, argv, env, cwd, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} is already running"
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.name}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=out,
                                          start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole process group (the dramatiq main process and its workers)."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if not self.running:
            return
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Pool(Process):
    """``dramatiq recsys_workers --processes 2 --threads 2`` over its own data dir."""

    def __init__(self, name: str, folder: Path, env: dict[str, str], processes: int = 2, threads: int = 2) -> None:
        self.data_dir = folder / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(env, RECSYS_DATA_DIR=str(self.data_dir))
        argv = [str(BIN / "dramatiq"), "recsys_workers", "--processes", str(processes), "--threads", str(threads)]
        super().__init__(name, argv, env, folder, folder / "pool.log")
        self.processes = processes

    def restart(self, **extra_env: str) -> Pool:
        self.stop()
        base = {k: v for k, v in self.env.items() if not k.startswith("TESTENGINE_")}
        self.env = dict(base, **extra_env)
        return self.start()

    def handled(self, pattern: str) -> Counter[int]:
        """How many log lines matching ``pattern`` each worker process (pid) wrote."""
        counts: Counter[int] = Counter()
        for line in self.text().splitlines():
            found = re.search(r"\[PID (\d+)\]", line)
            if found and re.search(pattern, line):
                counts[int(found.group(1))] += 1
        return counts


def heartbeats(redis_url: str) -> list[dict[str, Any]]:
    kv = RedisKV(redis_url)
    try:
        return Heartbeats(kv, 1).live()
    finally:
        kv.close()


def beats_of(redis_url: str, pool: Pool) -> list[dict[str, Any]]:
    return [b for b in heartbeats(redis_url) if b.get("data_dir") == str(pool.data_dir)]


def serving(redis_url: str, pool: Pool, generation: int) -> list[dict[str, Any]] | None:
    """The pool's heartbeats when each of its processes serves ``generation``, else None.
    A killed process's heartbeat lingers until it expires, so only the newest
    ``processes`` heartbeats of the pool count."""
    beats = sorted(beats_of(redis_url, pool), key=lambda b: b.get("started_at", ""))[-pool.processes:]
    if len(beats) == pool.processes and all(b.get("generation") == generation for b in beats):
        return beats
    return None


def vhost_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path[1:]) or "/"


def list_queues(amqp_url: str) -> list[dict[str, Any]]:
    """Every queue of the vhost (rabbitmqctl), with name, durable, exclusive, auto_delete."""
    out = subprocess.run(
        [shutil.which("rabbitmqctl") or "rabbitmqctl", "list_queues", "-q", "-p", vhost_of(amqp_url),
         "name", "durable", "exclusive", "auto_delete", "--formatter", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    return list(json.loads(out.stdout or "[]"))


def close_connections(amqp_url: str) -> None:
    """Make RabbitMQ close every connection of the vhost (a network cut, as seen by clients)."""
    subprocess.run(
        [shutil.which("rabbitmqctl") or "rabbitmqctl", "close_all_connections", "-q", "--vhost", vhost_of(amqp_url),
         "--limit", "1000", "recsys test: connection cut"],
        capture_output=True, text=True, check=True, timeout=60,
    )


def broadcast_queues(amqp_url: str) -> list[str]:
    return sorted(q["name"] for q in list_queues(amqp_url) if q["name"].startswith(EXCHANGE))


def publish_broadcast(amqp_url: str, *, generation: int, version: str, created_at: str, sha256: str) -> None:
    """Publish ``engine_updated`` to the fanout exchange as the API does (recsys.protocol)."""
    message = dramatiq.Message(
        queue_name=EXCHANGE, actor_name=protocol.ENGINE_UPDATED_ACTOR, args=(),
        kwargs={"generation": generation, "version": version, "created_at": created_at, "sha256": sha256},
        options={},
    )
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(EXCHANGE, exchange_type="fanout", passive=True)
        channel.basic_publish(exchange=EXCHANGE, routing_key="", body=message.encode(),
                              properties=pika.BasicProperties(delivery_mode=1))
    finally:
        connection.close()
