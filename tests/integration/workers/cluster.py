"""Helpers of the worker integration tests: real `dramatiq recsys_workers` pools (one
data dir each: a "machine"), `periodiq` schedulers, broadcasts published as the API
does, RabbitMQ queue listings and heartbeats. Processes and polling come from
:mod:`tests.support.processes`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import dramatiq

from recsys import protocol
from recsys.cluster import Heartbeats
from recsys.kv import RedisKV
from recsys_api import broadcast
from tests.support.processes import BIN, Process

EXCHANGE = "recsys.broadcast"


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
        """Stop (SIGTERM), then start again with the TESTENGINE_ variables of
        ``extra_env`` in place of the previous ones."""
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
    A killed process's heartbeat lingers until it expires, so only the heartbeats of the
    pool's live processes count (the newest ``processes`` of them)."""
    live = pool.pids()
    beats = sorted((b for b in beats_of(redis_url, pool) if b.get("pid") in live),
                   key=lambda b: b.get("started_at", ""))[-pool.processes:]
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


def publish_broadcast(amqp_url: str, **kwargs: Any) -> None:
    """Publish ``engine_updated`` with ``kwargs`` (generation, version, created_at,
    manifest_sha256 as the API sends them; sha256 as a first-wave API did) to the fanout
    exchange with the API's publisher."""
    message = dramatiq.Message(
        queue_name=EXCHANGE, actor_name=protocol.ENGINE_UPDATED_ACTOR, args=(), kwargs=kwargs, options={},
    )
    broadcast.publish_broadcast(amqp_url, EXCHANGE, message)
