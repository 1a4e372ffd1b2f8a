"""Reply helpers shared by the resources: task links and task-error statuses."""

from __future__ import annotations

import falcon

from recsys import protocol
from recsys_api.errors import ApiError

__all__ = ["accepted", "task_error", "task_url"]

_TITLES = {
    "bad_request": "Invalid request",
    "unknown_publication": "Unknown publication",
    "no_engine": "No engine yet",
    "unavailable": "Service unavailable",
    "build_running": "Build already running",
    "upload_refused": "Upload refused",
    "engine_load": "Engine not loaded",
    "incompatible_engine": "Engine not loaded",
    "timeout": "Gateway timeout",
}
_HINTS = {
    "no_engine": (
        "no engine has been built yet; one is built at the API's first start, or start one with "
        "POST /v1/engine/builds (API token needed), then retry"
    ),
}


def task_url(task_id: str) -> str:
    return f"/v1/tasks/{task_id}"


def accepted(resp: falcon.Response, task_id: str, *, preference_applied: bool = False) -> None:
    """202 with ``{"task_id", "status_url"}`` and a Location to poll."""
    url = task_url(task_id)
    resp.status = falcon.HTTP_202
    resp.location = url
    if preference_applied:
        resp.set_header("Preference-Applied", "respond-async")
    resp.media = {"task_id": task_id, "status_url": url}


def task_error(error: dict[str, str]) -> ApiError:
    """The HTTP error for a task's ``{"code", "message"}`` (status per protocol.ERROR_STATUS)."""
    code = error.get("code", "internal")
    status = protocol.ERROR_STATUS.get(code, 500)
    message = error.get("message") or code
    hint = _HINTS.get(code)
    description = f"{message} ({hint})" if hint and hint not in message else message
    headers = {"Retry-After": "5"} if status == 503 else None
    return ApiError(status, _TITLES.get(code, "Task failed"), description, extra={"code": code}, headers=headers)
