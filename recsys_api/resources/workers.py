"""``GET /v1/workers``: live worker processes and whether they serve the current engine."""

from __future__ import annotations

from typing import Any

import falcon

from recsys.cluster import Heartbeats
from recsys_api.archive_store import ArchiveStore

__all__ = ["Workers", "workers_report"]

FIELDS = ("host", "pid", "generation", "version", "queues", "seen_at")


def workers_report(store: ArchiveStore, heartbeats: Heartbeats, request_queue: str) -> dict[str, Any]:
    """The body of ``GET /v1/workers``.

    ``converged`` is true only when an engine exists, at least one live worker serves
    recommendations (its queues include the request queue, or it reports none), and
    every such worker serves the current generation. Workers that only build are
    listed but do not count.
    """
    current = store.current()
    workers = [{key: beat.get(key) for key in FIELDS} for beat in heartbeats.live()]
    serving = [w for w in workers if not w["queues"] or request_queue in (w["queues"] or ())]
    converged = (
        current is not None and bool(serving) and all(w["generation"] == current.generation for w in serving)
    )
    return {
        "generation": current.generation if current else None,
        "version": current.version if current else None,
        "converged": converged,
        "workers": workers,
    }


class Workers:
    def __init__(self, store: ArchiveStore, heartbeats: Heartbeats, request_queue: str) -> None:
        self.store = store
        self.heartbeats = heartbeats
        self.request_queue = request_queue

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = workers_report(self.store, self.heartbeats, self.request_queue)
