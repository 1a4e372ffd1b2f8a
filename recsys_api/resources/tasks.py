"""``GET /v1/tasks/{task_id}``: a started task's status and result."""

from __future__ import annotations

import falcon

from recsys_api.errors import ApiError
from recsys_api.tasks import TaskClient

__all__ = ["Task"]


class Task:
    def __init__(self, tasks: TaskClient, result_ttl: int) -> None:
        self.tasks = tasks
        self.result_ttl = result_ttl

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        status = self.tasks.status(task_id)
        if status is None:
            shown = task_id if len(task_id) <= 80 else task_id[:77] + "..."
            raise ApiError(
                404, "Unknown task",
                f"no task {shown!r}: this API did not start it, or it finished more than "
                f"{self.result_ttl} s ago and its result has expired",
            )
        resp.media = status.to_dict()
