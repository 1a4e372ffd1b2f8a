"""The feature gate: a request that needs a feature an older live worker pool lacks is
refused at once (503 ``feature_unavailable``) instead of being answered wrongly or
waiting for its timeout.

Each worker process advertises its features in its heartbeat (:mod:`recsys.protocol`,
"Mixed versions"); a heartbeat without them is an older worker, which has none. Every
live worker that serves the request queue may take the request, so each of them must
have every feature it needs. A *pool* is the processes of one host that run the same
recsys version with the same features. With no live worker at all the gate lets the
request through (it waits for a worker, as before).

Resources call :meth:`FeatureGate.require` with :func:`recsys.protocol.needed_features`
of the validated body; a request that needs no feature costs nothing, and the
heartbeats are read at most once per ``max_age`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from recsys import protocol
from recsys.cluster import Heartbeats
from recsys.errors import FeatureUnavailable, Unavailable

__all__ = ["FeatureGate", "worker_pools"]


def worker_pools(heartbeats: Iterable[dict[str, Any]], request_queue: str) -> list[dict[str, Any]]:
    """The live pools that serve ``request_queue`` (its name in their queues, or none
    reported): ``{"host", "recsys_version", "protocol", "features", "workers"}`` each,
    ``features`` sorted; ``recsys_version`` and ``protocol`` are null (protocol 1) for
    an older worker."""
    pools: dict[tuple[Any, ...], dict[str, Any]] = {}
    for beat in heartbeats:
        queues = beat.get("queues") or ()
        if queues and request_queue not in queues:
            continue
        features = sorted(protocol.heartbeat_features(beat))
        version = beat.get("recsys_version")
        level = beat.get("protocol") if isinstance(beat.get("protocol"), int) else 1
        key = (str(beat.get("host")), version, level, tuple(features))
        pool = pools.setdefault(key, {"host": key[0], "recsys_version": version, "protocol": level,
                                      "features": features, "workers": 0})
        pool["workers"] += 1
    return sorted(pools.values(), key=lambda p: (p["host"], str(p["recsys_version"]), p["protocol"]))


class FeatureGate:
    """:meth:`require` raises FeatureUnavailable while a live pool lacks a needed feature."""

    def __init__(self, heartbeats: Heartbeats, request_queue: str, *, max_age: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.heartbeats = heartbeats
        self.request_queue = request_queue
        self.max_age = max_age
        self.clock = clock
        self._pools: list[dict[str, Any]] = []
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def pools(self) -> list[dict[str, Any]]:
        """The live pools (:func:`worker_pools`), read at most every ``max_age`` seconds."""
        with self._lock:
            now = self.clock()
            if now - self._read_at >= self.max_age:
                self._pools = worker_pools(self.heartbeats.live(), self.request_queue)
                self._read_at = now
            return self._pools

    def require(self, features: Iterable[str], *, what: str = "this request") -> None:
        """Return when every live pool has every one of ``features``; else raise
        FeatureUnavailable naming the missing features and the pools that lack them.
        When the heartbeats cannot be read (Redis down) it returns too: the task's send
        then answers the 503 ``unavailable``, through the circuit that spares Redis."""
        needed = set(features)
        if not needed:
            return
        try:
            pools = self.pools()
        except Unavailable:  # Redis down: the task's send says so, through its circuit
            return
        lacking = []
        for pool in pools:
            missing = sorted(needed - set(pool["features"]))
            if missing:
                lacking.append({key: value for key, value in pool.items() if key != "features"} | {"lacking": missing})
        if not lacking:
            return
        names = sorted({name for pool in lacking for name in pool["lacking"]})
        shown = "; ".join(
            f"{pool['host']} ({_version(pool)}, {pool['workers']} process{'es' if pool['workers'] != 1 else ''}) "
            f"lacks {', '.join(pool['lacking'])}"
            for pool in lacking
        )
        counted = f"{len(lacking)} live worker pool" + (" does" if len(lacking) == 1 else "s do")
        raise FeatureUnavailable(
            f"{what} uses {', '.join(repr(n) for n in names)}, which {counted} not support yet: {shown}; "
            "upgrade the workers first, then the API (docs/operations.md, 'Upgrade'), or retry without it",
            features=names, pools=lacking,
        )


def _version(pool: dict[str, Any]) -> str:
    version = pool["recsys_version"]
    return f"recsys {version}, protocol {pool['protocol']}" if version else f"protocol {pool['protocol']}"
