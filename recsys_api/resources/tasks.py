"""``GET /v1/tasks/{task_id}``: a started task's status and result, and its ``progress``
(``{"stage", "done", "total", "rate", "eta_s", ...}``) when the task reports one (builds)."""

from __future__ import annotations

import falcon

from recsys.progress import ProgressStore
from recsys_api.errors import ApiError
from recsys_api.tasks import TaskClient

__all__ = ["Task"]


class Task:
    def __init__(self, tasks: TaskClient, result_ttl: int, progress: ProgressStore | None = None) -> None:
        self.tasks = tasks
        self.result_ttl = result_ttl
        self.progress = progress

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        status = self.tasks.status(task_id)
        if status is None:
            shown = task_id if len(task_id) <= 80 else task_id[:77] + "..."
            raise ApiError(
                404, "Unknown task",
                f"no task {shown!r}: this API did not start it, or it finished more than "
                f"{self.result_ttl} s ago and its result has expired",
            )
        body = status.to_dict()
        record = self.progress.get(task_id) if self.progress is not None else None
        if record is not None:
            body["progress"] = record.to_dict()
        resp.media = body
