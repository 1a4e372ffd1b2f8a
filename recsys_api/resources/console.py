"""The operator console: ``GET /console`` (a page) and ``GET /v1/console/state`` (what it shows).

The page (``recsys_api/static/console/``: HTML, vanilla JS, CSS, all served by the API
under ``/console/assets/``; nothing from elsewhere, and a Content-Security-Policy that
says so) needs no token to read; its build and rollback buttons ask for one. It polls
the state every :data:`REFRESH_MS` and runs searches with ``POST /v1/recommendations``.

The state is one cheap read of what the cluster already records: the archive store's
current and previous engine, the workers' heartbeats (grouped by machine: host and data
dir), the machines' rollout reports, the build lock, the running build's progress and
the build history (Redis), and the queue counts (:mod:`recsys_api.queues`, cached).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import falcon

from recsys.cluster import BuildLock, Heartbeats, Rollouts, utcnow_iso
from recsys.progress import BuildHistory, ProgressStore
from recsys_api.archive_store import ArchiveStore, StoredVersion
from recsys_api.queues import QueueStats
from recsys_api.resources.workers import workers_report

__all__ = ["ASSETS_PREFIX", "CONSOLE_FOLDER", "ConsolePage", "ConsoleState", "add_console_routes", "console_state"]

CONSOLE_FOLDER = Path(__file__).resolve().parent.parent / "static" / "console"
ASSETS_PREFIX = "/console/assets"
#: How often the page asks for the state.
REFRESH_MS = 2000
#: A heartbeat older than this many intervals is marked stale (it expires after three).
STALE_INTERVALS = 2.0
#: The page may load only what the API serves (and talk only to it).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _engine(archive: StoredVersion | None) -> dict[str, Any] | None:
    if archive is None:
        return None
    manifest = archive.manifest
    return {
        "engine": manifest.engine, "engine_version": manifest.engine_version, "version": archive.version,
        "generation": archive.generation, "publications": manifest.publications, "sentences": manifest.sentences,
        "created_at": manifest.created_at, "installed_at": archive.installed_at, "size": archive.engine_bytes,
        "manifest_sha256": archive.manifest_sha256, "quality": manifest.quality, "quality_gate": archive.gate,
    }


def _previous(store: ArchiveStore) -> StoredVersion | None:
    previous = getattr(store, "previous", None)
    return previous() if callable(previous) else None


def _age(seen_at: Any, now: datetime) -> float | None:
    if not isinstance(seen_at, str) or not seen_at:
        return None
    try:
        moment = datetime.fromisoformat(seen_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(max(0.0, (now - moment).total_seconds()), 1)


class _Snapshot(Heartbeats):
    """Heartbeats already read (one scan serves the report and the machines)."""

    def __init__(self, beats: list[dict[str, Any]], interval: float) -> None:
        super().__init__(kv=None, interval=interval)  # type: ignore[arg-type]
        self.beats = beats

    def live(self) -> list[dict[str, Any]]:
        return self.beats


def _machines(beats: list[dict[str, Any]], rollouts: list[dict[str, Any]], current: int | None,
              request_queue: str, interval: float, now: datetime) -> list[dict[str, Any]]:
    machines: dict[tuple[str, str], dict[str, Any]] = {}
    for beat in beats:
        key = (str(beat.get("host") or "?"), str(beat.get("data_dir") or ""))
        machine = machines.setdefault(key, {"host": key[0], "data_dir": key[1], "workers": [], "rollout": None})
        age = _age(beat.get("seen_at"), now)
        queues = beat.get("queues") or []
        serving = not queues or request_queue in queues
        machine["workers"].append({
            "host": beat.get("host"), "pid": beat.get("pid"), "queues": queues, "engine": beat.get("engine"),
            "generation": beat.get("generation"), "version": beat.get("version"), "seen_at": beat.get("seen_at"),
            "started_at": beat.get("started_at"), "age_s": age,
            "stale": age is not None and age > STALE_INTERVALS * interval,
            "lagging": serving and current is not None and beat.get("generation") != current,
        })
    for rollout in rollouts:
        key = (str(rollout.get("host") or "?"), str(rollout.get("data_dir") or ""))
        if key in machines:
            machines[key]["rollout"] = rollout
    found = sorted(machines.values(), key=lambda m: (m["host"], m["data_dir"]))
    for machine in found:
        workers = machine["workers"]
        machine["processes"] = len(workers)
        machine["converged"] = current is not None and not any(w["lagging"] for w in workers)
        machine["generations"] = sorted({w["generation"] for w in workers if w["generation"] is not None})
    return found


def _rollout(record: dict[str, Any]) -> dict[str, Any]:
    needed = int(record.get("bytes_needed") or 0)
    fetched = int(record.get("bytes_fetched") or 0)
    return {**record, "percent": 100.0 if needed == 0 else round(min(100.0, 100.0 * fetched / needed), 1)}


def console_state(
    store: ArchiveStore,
    heartbeats: Heartbeats,
    lock: BuildLock,
    progress: ProgressStore,
    queues: QueueStats,
    request_queue: str,
) -> dict[str, Any]:
    """The body of ``GET /v1/console/state`` (see docs/operations.md, "Console")."""
    now = datetime.now(UTC)
    kv = heartbeats.kv
    current = store.current()
    beats = heartbeats.live()
    report = workers_report(store, _Snapshot(beats, heartbeats.interval), Rollouts(kv), request_queue)
    rollouts = [_rollout(r) for r in report["rollouts"]]
    generation = current.generation if current is not None else None
    holder = lock.holder()
    running = None
    if holder is not None:
        task_id = str(holder.get("message_id") or "")
        record = progress.get(task_id) if task_id else None
        running = {**holder, "task_id": task_id or None, "progress": record.to_dict() if record else None}
    return {
        "now": utcnow_iso(),
        "refresh_ms": REFRESH_MS,
        "engine": {"current": _engine(current), "previous": _engine(_previous(store))},
        "cluster": {
            "generation": generation, "version": report["version"], "converged": report["converged"],
            "heartbeat_interval": heartbeats.interval,
            "machines": _machines(beats, rollouts, generation, request_queue, heartbeats.interval, now),
        },
        "rollouts": rollouts,
        "builds": {"running": running, "queued": lock.queued(), "last": BuildHistory(kv).last()},
        "queues": queues.snapshot(),
    }


class ConsoleState:
    def __init__(self, store: ArchiveStore, heartbeats: Heartbeats, lock: BuildLock, progress: ProgressStore,
                 queues: QueueStats, request_queue: str) -> None:
        self.args = (store, heartbeats, lock, progress, queues, request_queue)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.cache_control = ["no-store"]
        resp.media = console_state(*self.args)


class ConsolePage:
    def __init__(self) -> None:
        self.body = (CONSOLE_FOLDER / "index.html").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["no-cache"]
        resp.set_header("Content-Security-Policy", CSP)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.data = self.body


def add_console_routes(app: falcon.App[falcon.Request, falcon.Response], state: ConsoleState) -> None:
    app.add_route("/console", ConsolePage())
    app.add_route("/v1/console/state", state)
    app.add_static_route(ASSETS_PREFIX, CONSOLE_FOLDER)
