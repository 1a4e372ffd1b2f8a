"""Cluster state shared by the API and the workers, kept in a :class:`~recsys.kv.KV`.

Keys (all under ``recsys:``):

====================================  =========================================================
``recsys:worker:<host>:<pid>``        a worker process's heartbeat (JSON), expires after 3 beats
``recsys:build:lock``                 the cluster-wide build lock (JSON with a random token),
                                      expires unless its holder renews it
``recsys:build:queued``               id of a build_index message sent but not started yet
``recsys:build:tick:<scheduled_at>``  a scheduled tick already turned into a build
``recsys:task:<task_id>``             a task the API started (actor, queue), kept as long as
                                      its result
``recsys:rollout:<host>:<store>``     the last engine rollout of a worker machine (a host and
                                      engine store: ``<store>`` is a hash of its data dir), bytes
                                      fetched of bytes needed (JSON, :class:`Rollouts`), kept an hour
====================================  =========================================================
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from recsys import __version__
from recsys.errors import BuildLockHeld
from recsys.kv import KV
from recsys.protocol import PROTOCOL_VERSION, WORKER_FEATURES

__all__ = ["BuildLock", "Heartbeats", "RolloutProgress", "Rollouts", "TaskRecords", "WorkerInfo", "utcnow_iso"]

WORKER_PREFIX = "recsys:worker:"
BUILD_LOCK_KEY = "recsys:build:lock"
BUILD_QUEUED_KEY = "recsys:build:queued"
BUILD_TICK_PREFIX = "recsys:build:tick:"
TASK_PREFIX = "recsys:task:"
ROLLOUT_PREFIX = "recsys:rollout:"
#: How long a machine's last rollout report is kept.
ROLLOUT_TTL = 3600.0

#: How long a queued-build marker lives if no worker ever starts that build.
BUILD_QUEUED_TTL = 3600.0


def utcnow_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class WorkerInfo:
    """What a worker process reports about itself in its heartbeat: where it runs, its
    queues and engine, and what it supports (``protocol``, ``features``,
    ``recsys_version``: see :mod:`recsys.protocol`, "Mixed versions")."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    queues: list[str] = field(default_factory=list)
    generation: int | None = None
    version: str | None = None
    engine: str | None = None
    data_dir: str | None = None
    started_at: str = field(default_factory=utcnow_iso)
    seen_at: str = ""
    protocol: int = PROTOCOL_VERSION
    features: list[str] = field(default_factory=lambda: sorted(WORKER_FEATURES))
    recsys_version: str = __version__

    @property
    def key(self) -> str:
        return f"{WORKER_PREFIX}{self.host}:{self.pid}"


class Heartbeats:
    """Worker heartbeats: ``beat`` from each worker process, ``live`` for the API."""

    def __init__(self, kv: KV, interval: float) -> None:
        self.kv = kv
        self.interval = interval

    @property
    def ttl(self) -> float:
        return 3 * self.interval

    def beat(self, info: WorkerInfo) -> None:
        info.seen_at = utcnow_iso()
        self.kv.set(info.key, json.dumps(asdict(info)), ttl=self.ttl)

    def forget(self, info: WorkerInfo) -> None:
        self.kv.delete(info.key)

    def live(self) -> list[dict[str, Any]]:
        workers = []
        for value in self.kv.scan(WORKER_PREFIX).values():
            try:
                workers.append(json.loads(value))
            except ValueError:
                continue
        return sorted(workers, key=lambda w: (str(w.get("host")), int(w.get("pid") or 0)))


class BuildLock:
    """One build at a time across the cluster.

    The lock expires after ``ttl`` seconds unless renewed, so a dead holder frees it.
    The API marks a build as queued when it sends one, so that a second request gets
    409 before the first has started.
    """

    def __init__(self, kv: KV, ttl: float) -> None:
        self.kv = kv
        self.ttl = ttl

    def acquire(self, **owner: Any) -> str:
        """Take the lock or raise BuildLockHeld; returns the token to renew/release it."""
        token = secrets.token_hex(16)
        record = dict(owner, token=token, since=utcnow_iso())
        record.setdefault("host", socket.gethostname())
        record.setdefault("pid", os.getpid())
        if not self.kv.set(BUILD_LOCK_KEY, json.dumps(record), ttl=self.ttl, nx=True):
            raise BuildLockHeld(self.holder())
        return token

    def renew(self, token: str) -> bool:
        """Extend the lock; False when it was lost (expired, or taken by another)."""
        value = self.kv.get(BUILD_LOCK_KEY)
        if value is None or json.loads(value).get("token") != token:
            return False
        return self.kv.expire_if(BUILD_LOCK_KEY, value, self.ttl)

    def release(self, token: str) -> bool:
        value = self.kv.get(BUILD_LOCK_KEY)
        if value is None or json.loads(value).get("token") != token:
            return False
        return self.kv.delete_if(BUILD_LOCK_KEY, value)

    def holder(self) -> dict[str, Any] | None:
        value = self.kv.get(BUILD_LOCK_KEY)
        if value is None:
            return None
        record: dict[str, Any] = json.loads(value)
        record.pop("token", None)
        return record

    def mark_queued(self, message_id: str) -> bool:
        """Record a sent build; False when one is already queued."""
        return self.kv.set(BUILD_QUEUED_KEY, message_id, ttl=BUILD_QUEUED_TTL, nx=True)

    def clear_queued(self, message_id: str) -> None:
        self.kv.delete_if(BUILD_QUEUED_KEY, message_id)

    def queued(self) -> str | None:
        return self.kv.get(BUILD_QUEUED_KEY)

    def busy(self) -> str | None:
        """Why a new build cannot start now (a running or queued one), or None."""
        holder = self.holder()
        if holder is not None:
            return str(BuildLockHeld(holder))
        queued = self.queued()
        if queued is not None:
            return f"a build is already queued (task {queued})"
        return None

    def claim_tick(self, scheduled_at: str, ttl: float = 86400.0) -> bool:
        """True for the first build of a scheduled tick, False for a duplicate."""
        return self.kv.set(BUILD_TICK_PREFIX + scheduled_at, "1", ttl=ttl, nx=True)


class TaskRecords:
    """The ids of tasks the API started, so that an unknown id is told from a pending one."""

    def __init__(self, kv: KV, ttl: float) -> None:
        self.kv = kv
        self.ttl = ttl

    def record(self, task_id: str, *, actor: str, queue: str) -> None:
        payload = {"actor": actor, "queue": queue, "created_at": utcnow_iso()}
        self.kv.set(TASK_PREFIX + task_id, json.dumps(payload), ttl=self.ttl)

    def get(self, task_id: str) -> dict[str, Any] | None:
        value = self.kv.get(TASK_PREFIX + task_id)
        return None if value is None else dict(json.loads(value))


@dataclass
class RolloutProgress:
    """One machine's engine rollout, as its downloading process reports it.

    ``state``: ``fetching`` while files arrive, then ``done`` or ``failed`` (with
    ``error``). ``bytes_needed`` / ``files_needed``: what the machine lacked;
    ``bytes_reused``: the version's bytes it already held (unchanged segments).
    ``data_dir``: the machine's engine store folder (several pools of one host are several
    machines, each with its own store).
    """

    generation: int
    version: str
    manifest_sha256: str | None = None
    state: str = "fetching"
    files_needed: int = 0
    files_fetched: int = 0
    bytes_needed: int = 0
    bytes_fetched: int = 0
    bytes_reused: int = 0
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: str = field(default_factory=utcnow_iso)
    updated_at: str = ""
    seconds: float = 0.0
    error: str | None = None
    data_dir: str | None = None

    @property
    def key(self) -> str:
        store = hashlib.sha256((self.data_dir or "").encode()).hexdigest()[:12]
        return f"{ROLLOUT_PREFIX}{self.host}:{store}"


class Rollouts:
    """Rollout progress per machine: ``report`` from workers, ``live`` for the API."""

    def __init__(self, kv: KV, ttl: float = ROLLOUT_TTL) -> None:
        self.kv = kv
        self.ttl = ttl

    def report(self, progress: RolloutProgress) -> None:
        progress.updated_at = utcnow_iso()
        self.kv.set(progress.key, json.dumps(asdict(progress)), ttl=self.ttl)

    def live(self) -> list[dict[str, Any]]:
        """Each machine's last report, by host and data dir."""
        found = []
        for value in self.kv.scan(ROLLOUT_PREFIX).values():
            try:
                record = json.loads(value)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
        return sorted(found, key=lambda r: (str(r.get("host")), str(r.get("data_dir"))))
