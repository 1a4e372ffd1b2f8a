"""Reply helpers shared by the resources: task links and task errors."""

from __future__ import annotations

import falcon

from recsys_api.errors import ApiError, http_error

__all__ = ["accepted", "building", "task_error", "task_url"]


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
    """The HTTP error for a task's ``{"code", "message"}``: the same as the API's own
    error of that code (:func:`recsys_api.errors.http_error`)."""
    return http_error(error.get("code") or "internal", error.get("message") or "")


def building(task_id: str) -> ApiError:
    """503 ``no_engine`` while the first engine is being built: says so (not "start a
    build"), with the build's ``task_id`` and ``status_url``."""
    url = task_url(task_id)
    return http_error(
        "no_engine",
        f"no engine yet: the first engine is being built (task {task_id}); retry when it has finished "
        f"(GET {url} follows it)",
        extra={"task_id": task_id, "status_url": url}, hint=False,
    )
