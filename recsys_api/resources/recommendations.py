"""``POST /v1/recommendations`` and ``/v1/recommendations/batch``: validate, send the task, wait for its result."""

from __future__ import annotations

from typing import Any

import falcon

from recsys import protocol
from recsys.config import Settings
from recsys.errors import Unavailable, WaitTimeout
from recsys_api.archive_store import ArchiveStore
from recsys_api.body import read_json
from recsys_api.builds import BuildStarter
from recsys_api.errors import http_error
from recsys_api.features import FeatureGate
from recsys_api.metrics import Metrics
from recsys_api.prefer import parse_prefer
from recsys_api.resources._replies import accepted, building, task_error, task_url
from recsys_api.tasks import TaskClient
from recsys_api.validation import validate_batch, validate_recommendation

__all__ = ["RecommendationBatch", "Recommendations", "prefers_async"]


def prefers_async(req: falcon.Request) -> bool:
    """Whether the ``Prefer`` header asks for ``respond-async`` (RFC 7240; 400 when it does not parse)."""
    return "respond-async" in parse_prefer(req.get_header("Prefer"))


class Recommendations:
    #: The actor this resource sends.
    actor = protocol.RECOMMEND_ACTOR
    #: Whether the body is a batch (``{"queries": [...]}``: the features of every query count).
    batch = False

    def __init__(self, settings: Settings, tasks: TaskClient, store: ArchiveStore, metrics: Metrics,
                 features: FeatureGate | None = None, builds: BuildStarter | None = None) -> None:
        self.settings = settings
        self.tasks = tasks
        self.store = store
        self.metrics = metrics
        self.features = features
        self.builds = builds

    def request(self, body: Any) -> dict[str, Any]:
        """The task's request from the body (a 400 ApiError when it breaks a rule)."""
        return validate_recommendation(body)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        asynchronous = prefers_async(req)
        request = self.request(read_json(req, self.settings.max_body_bytes))
        if self.features is not None:  # 503 feature_unavailable while an older pool is live
            self.features.require(protocol.needed_features(request, batch=self.batch))
        request["min_generation"] = self.store.generation()
        if request["min_generation"] is None:
            self._refuse_while_building()
        # A task answered within the request never shows its id: it is recorded only when
        # the id is handed out (202 here, or 504 below), which saves a Redis round trip.
        message = self.tasks.send(
            self.tasks.message(self.actor, self.settings.request_queue, {"request": request}),
            record=asynchronous,
        )
        if asynchronous:
            accepted(resp, message.message_id, preference_applied=True)
            return
        try:
            with self.metrics.waits.track_inprogress():
                # Nobody else can ask for this result (its id is not shown): read and drop it.
                result = self.tasks.wait(message, self.settings.request_timeout, take=True)
        except WaitTimeout as exc:
            self.tasks.record(message)
            url = task_url(exc.task_id)
            raise http_error(
                exc.code, exc.message, extra={"task_id": exc.task_id, "status_url": url}, headers={"Location": url}
            ) from None
        error = protocol.error_of(result)
        if error is not None:
            if error["code"] == "no_engine" and request["min_generation"] is None:
                self._refuse_while_building()
            raise task_error(error)
        resp.media = result

    def _refuse_while_building(self) -> None:
        """No engine yet: while the first build runs, 503 with its task link."""
        try:
            task_id = self.builds.running() if self.builds is not None else None
        except Unavailable:  # Redis down: the task's send says so, through its circuit
            return
        if task_id is not None:
            raise building(task_id)


class RecommendationBatch(Recommendations):
    """``{"queries": [...]}``: one ``recommend_batch`` task; a query that breaks a rule is
    sent as its error item, so the task's result (also when polled) has every answer."""

    actor = protocol.RECOMMEND_BATCH_ACTOR
    batch = True

    def request(self, body: Any) -> dict[str, Any]:
        queries = validate_batch(body)
        strict = any(query.get("strict") is True for query in queries)
        return {"queries": queries, "strict": strict}
