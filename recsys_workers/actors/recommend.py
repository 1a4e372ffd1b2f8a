"""``recommend(request)``: recommendations for a text or a stored publication.

``request`` is the API's validated body (``text`` or ``publication_id``, ``k``,
filters ``exclude_ids``, ``label``, ``year_min``, ``year_max``; ``strict``) plus
``min_generation``, the API's current generation. The engine is prepared by
:class:`~recsys_workers.middleware.EngineMiddleware` (``engine="any"``; a strict
request is handled as ``strict``).

The result is ``{"engine": {"name", "version", "generation"}, "recommendations":
[...]}``. A failure is a result too, stored at once and never retried, so the API
answers its client now: ``{"error": {"code", "message"}}`` with the RecsysError's
code (``no_engine``, ``unknown_publication``, ``bad_request``, ``unavailable``...),
``timeout`` when the task ran past ``RECSYS_REQUEST_TIMEOUT``, or ``internal`` for an
unexpected exception, which is logged with its traceback
(:func:`recsys_workers.errors.attempt`). An archive this worker downloaded that fails
its checks is ``engine_load`` here: the worker could not install the API's engine,
which is no fault of the client's request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import dramatiq
from dramatiq import Broker

from recsys import protocol
from recsys.config import Settings
from recsys.domain import Query
from recsys.errors import EngineLoadError, InvalidArchive, InvalidQuery, RecsysError
from recsys_workers.errors import attempt
from recsys_workers.middleware import ANY, task_engine

__all__ = ["REQUEST_PRIORITY", "declare_recommend", "recommend_body"]

logger = logging.getLogger(__name__)

#: Dramatiq runs lower numbers first among the messages a process has fetched.
REQUEST_PRIORITY = 10


def recommend_body(request: Any) -> dict[str, Any]:
    """The task: parse, ask the prepared engine, shape the result (raises RecsysError)."""
    try:
        loaded = task_engine()
    except InvalidArchive as exc:
        raise EngineLoadError(
            f"this worker could not install the API's current engine: {exc.message}; retry shortly"
        ) from exc
    if not isinstance(request, Mapping):
        raise InvalidQuery(f"the request must be a JSON object, got {type(request).__name__}")
    query = Query.from_dict(request)
    recommendations = loaded.engine.recommend(query)
    return {
        "engine": {"name": loaded.manifest.engine, "version": loaded.version, "generation": loaded.generation},
        "recommendations": [r.to_dict() for r in recommendations],
    }


def declare_recommend(broker: Broker, settings: Settings) -> dramatiq.Actor[Any, Any]:
    timeout = settings.request_timeout

    def recommend(request: Any) -> dict[str, Any]:
        outcome = attempt(lambda: recommend_body(request), logger=logger, failed="recommend failed",
                          what="the recommendation", limit=f"{timeout} s (RECSYS_REQUEST_TIMEOUT)",
                          level=logging.INFO)
        return protocol.error_result(outcome) if isinstance(outcome, RecsysError) else outcome

    return dramatiq.actor(
        broker=broker,
        actor_name=protocol.RECOMMEND_ACTOR,
        queue_name=settings.request_queue,
        priority=REQUEST_PRIORITY,
        max_retries=0,
        store_results=True,
        time_limit=timeout * 1000,
        engine=ANY,
    )(recommend)
