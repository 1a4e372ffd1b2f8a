"""``recommend(request)`` and ``recommend_batch(request)``: recommendations for a text,
a stored publication or examples; a batch of such queries in one task.

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
from collections.abc import Callable, Mapping
from typing import Any

import dramatiq
from dramatiq import Broker

from recsys import protocol
from recsys.cache import Loaded
from recsys.config import Settings
from recsys.domain import Query
from recsys.errors import EngineLoadError, InvalidArchive, InvalidQuery, RecsysError
from recsys_workers.errors import attempt
from recsys_workers.middleware import ANY, task_engine

__all__ = ["REQUEST_PRIORITY", "declare_recommend", "declare_recommend_batch", "recommend_batch_body",
           "recommend_body"]

logger = logging.getLogger(__name__)

#: Dramatiq runs lower numbers first among the messages a process has fetched.
REQUEST_PRIORITY = 10


def _engine() -> Loaded:
    try:
        return task_engine()
    except InvalidArchive as exc:
        raise EngineLoadError(
            f"this worker could not install the API's current engine: {exc.message}; retry shortly"
        ) from exc


def _engine_info(loaded: Loaded) -> dict[str, Any]:
    return {"name": loaded.manifest.engine, "version": loaded.version, "generation": loaded.generation}


def recommend_body(request: Any) -> dict[str, Any]:
    """The task: parse, ask the prepared engine, shape the result (raises RecsysError)."""
    loaded = _engine()
    if not isinstance(request, Mapping):
        raise InvalidQuery(f"the request must be a JSON object, got {type(request).__name__}")
    query = Query.from_dict(request)
    recommendations = loaded.engine.recommend(query)
    return {"engine": _engine_info(loaded), "recommendations": [r.to_dict() for r in recommendations]}


def recommend_batch_body(request: Any) -> dict[str, Any]:
    """The batch task: every query answered by one ``recommend_many`` call, in order; a query
    that the API or ``Query`` found invalid, or that failed, has its error item."""
    loaded = _engine()
    if not isinstance(request, Mapping) or not isinstance(request.get("queries"), list):
        raise InvalidQuery("the request must be a JSON object with a 'queries' list")
    results: list[dict[str, Any] | None] = []
    queries: list[Query] = []
    places: list[int] = []
    for item in request["queries"]:
        error = protocol.error_of(item)
        if error is not None:
            results.append({"error": {**item["error"], **error}})
            continue
        try:
            if not isinstance(item, Mapping):
                raise InvalidQuery(f"a query must be a JSON object, got {type(item).__name__}")
            queries.append(Query.from_dict(item))
        except RecsysError as exc:
            results.append(protocol.error_result(exc))
            continue
        places.append(len(results))
        results.append(None)
    for place, answer in zip(places, loaded.engine.recommend_many(queries), strict=True):
        if isinstance(answer, RecsysError):
            results[place] = protocol.error_result(answer)
        else:
            results[place] = {"recommendations": [r.to_dict() for r in answer]}
    return {"engine": _engine_info(loaded), "results": results}


def declare_recommend(broker: Broker, settings: Settings) -> dramatiq.Actor[Any, Any]:
    return _declare(broker, settings, protocol.RECOMMEND_ACTOR, lambda r: recommend_body(r), "the recommendation")


def declare_recommend_batch(broker: Broker, settings: Settings) -> dramatiq.Actor[Any, Any]:
    return _declare(broker, settings, protocol.RECOMMEND_BATCH_ACTOR, lambda r: recommend_batch_body(r),
                    "the batch")


def _declare(broker: Broker, settings: Settings, name: str, body: Callable[[Any], dict[str, Any]],
             what: str) -> dramatiq.Actor[Any, Any]:
    timeout = settings.request_timeout

    def recommend(request: Any) -> dict[str, Any]:
        outcome = attempt(lambda: body(request), logger=logger, failed=f"{name} failed",
                          what=what, limit=f"{timeout} s (RECSYS_REQUEST_TIMEOUT)",
                          level=logging.INFO)
        return protocol.error_result(outcome) if isinstance(outcome, RecsysError) else outcome

    recommend.__name__ = recommend.__qualname__ = name
    return dramatiq.actor(
        broker=broker,
        actor_name=name,
        queue_name=settings.request_queue,
        priority=REQUEST_PRIORITY,
        max_retries=0,
        store_results=True,
        time_limit=timeout * 1000,
        engine=ANY,
    )(recommend)
