"""``GET /v1/workers``: live worker processes, whether they serve the current engine, and
each machine's last engine rollout (bytes fetched of bytes needed)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import falcon

from recsys import protocol
from recsys.cluster import Heartbeats, RolloutProgress, Rollouts
from recsys_api.archive_store import ArchiveStore

__all__ = ["Workers", "workers_report"]

FIELDS = ("host", "pid", "generation", "version", "queues", "seen_at", "recsys_version")
ROLLOUT_FIELDS = ("host", *(f.name for f in fields(RolloutProgress) if f.name != "host"))


def workers_report(
    store: ArchiveStore, heartbeats: Heartbeats, rollouts: Rollouts, request_queue: str
) -> dict[str, Any]:
    """The body of ``GET /v1/workers``.

    ``converged`` is true only when an engine exists, at least one live worker serves
    recommendations (its queues include the request queue, or it reports none), and
    every such worker serves the current generation. Each worker has its ``protocol``
    (1 for an older worker that does not say), ``features`` and ``recsys_version``.
    Workers that only build are listed but do not count. ``rollouts``: each worker machine's last rollout report
    (:class:`recsys.cluster.Rollouts`, kept an hour), by host and data dir.
    """
    current = store.current()
    workers: list[dict[str, Any]] = [
        {**{key: beat.get(key) for key in FIELDS}, "protocol": beat.get("protocol") or 1,
         "features": sorted(protocol.heartbeat_features(beat))}
        for beat in heartbeats.live()
    ]
    serving = [w for w in workers if not w["queues"] or request_queue in (w["queues"] or ())]
    converged = (
        current is not None and bool(serving) and all(w["generation"] == current.generation for w in serving)
    )
    return {
        "generation": current.generation if current else None,
        "version": current.version if current else None,
        "converged": converged,
        "workers": workers,
        "rollouts": [{key: report.get(key) for key in ROLLOUT_FIELDS} for report in rollouts.live()],
    }


class Workers:
    def __init__(self, store: ArchiveStore, heartbeats: Heartbeats, rollouts: Rollouts, request_queue: str) -> None:
        self.store = store
        self.heartbeats = heartbeats
        self.rollouts = rollouts
        self.request_queue = request_queue

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = workers_report(self.store, self.heartbeats, self.rollouts, self.request_queue)
