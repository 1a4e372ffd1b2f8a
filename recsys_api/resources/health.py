"""``GET /health`` (the process is alive; no dependency) and ``GET /ready`` (one check each
for the broker, the result store and the engine; 503 naming the failing ones).

Compose healthchecks use /health: the API is healthy before its first engine exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from recsys.errors import NoEngine, RecsysError
from recsys_api.archive_store import ArchiveStore
from recsys_api.errors import ApiError

__all__ = ["Health", "Ready"]

Check = Callable[[], dict[str, Any]]


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


def engine_check(store: ArchiveStore) -> Check:
    def check() -> dict[str, Any]:
        current = store.current()
        if current is None:
            raise NoEngine("no engine has been installed yet (the first build may still be running)")
        return {"generation": current.generation, "version": current.version}

    return check


class Ready:
    """Runs each check (each bounded by its client's own short timeouts)."""

    def __init__(self, checks: dict[str, Callable[[], Any]]) -> None:
        self.checks = checks

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        results: dict[str, dict[str, Any]] = {}
        for name, check in self.checks.items():
            try:
                detail = check()
            except RecsysError as exc:
                results[name] = {"ok": False, "error": exc.message}
            except Exception as exc:  # a probe must report, never crash the endpoint
                results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            else:
                results[name] = {"ok": True, **(detail if isinstance(detail, dict) else {})}
        failing = [name for name, result in results.items() if not result["ok"]]
        if failing:
            raise ApiError(
                503, "Not ready", "failing: " + "; ".join(f"{n}: {results[n]['error']}" for n in failing),
                extra={"checks": results}, headers={"Retry-After": "5"},
            )
        resp.media = {"status": "ready", "checks": results}
