"""HTTP errors of the API: one JSON shape, and recsys errors mapped once.

Every error body is JSON ``{"title", "description"}``, plus ``code`` for a recsys
error and fields that help the client act (``field`` on a 400 from validation,
``task_id`` and ``status_url`` on a 504 and on a 503 ``no_engine`` while the first
build runs, ``checks`` on a failed ``/ready``,
``missing`` on a 409 ``missing_files``, ``features`` and ``pools`` on a 503
``feature_unavailable``).

:func:`http_error` turns an error code and its message into the HTTP error, with
the status and title of the code in the one table (:data:`recsys.errors.ERRORS`),
``Retry-After`` on a 503 and the code's hint. It serves both the API's own errors
(the handlers below) and the error results of tasks
(:func:`recsys_api.resources._replies.task_error`), so both look the same. A code
this version does not know (a newer worker) is a 500 that keeps its code.

:func:`install` registers the serializer and one handler per class; Falcon picks the
most specific one by the exception's MRO:

==================  =========================================================
RecsysError         :func:`http_error` of its code; a 500 is logged as an error
MissingFiles        the same (409), with ``missing``: the files a thin upload lacks
StoreError          the same (503), logged as an error: the disk of RECSYS_DATA_DIR
Unavailable         the same (503), logged as a warning: Redis or RabbitMQ is down
FeatureUnavailable  the same (503), with ``features`` and ``pools`` (not logged: an answer)
any other           500 ``internal``, logged with its traceback
==================  =========================================================

Falcon's own HTTP errors (404 and 405 of the router, and the ApiErrors of
validation, authentication and the resources) pass through as they are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any

import falcon

from recsys.errors import (
    FeatureUnavailable,
    MissingFiles,
    QualityGate,
    RecsysError,
    StoreError,
    Unavailable,
    error_class,
)

__all__ = ["ApiError", "http_error", "install", "status_line"]

logger = logging.getLogger(__name__)

#: Seconds a client should wait before retrying a 503.
RETRY_AFTER = "5"

#: Descriptions for Falcon's own errors, which come without one.
_DEFAULT_DESCRIPTIONS = {
    404: "no resource at this path; the API's routes are listed at /docs and /openapi.json",
    405: "this method is not allowed on this path; the Allow header lists the allowed ones",
}


def status_line(code: int) -> str:
    """The HTTP status line Falcon expects for ``code`` (``"404 Not Found"``)."""
    return str(falcon.code_to_http_status(code))


class ApiError(falcon.HTTPError):
    """An HTTP error whose JSON body carries ``extra`` fields besides title and description."""

    def __init__(
        self,
        code: int,
        title: str,
        description: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_line(code), title=title, description=description, headers=headers)
        self.extra = dict(extra or {})

    def to_dict(self, obj_type: type[MutableMapping[str, Any]] = dict) -> MutableMapping[str, Any]:
        body = super().to_dict(obj_type)
        body.update(self.extra)
        return body


def _serialize(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Always JSON, always with a description (Falcon's own 404/405 have none)."""
    body = dict(error.to_dict())
    if not body.get("description"):
        body["description"] = _DEFAULT_DESCRIPTIONS.get(error.status_code, body.get("title", "error"))
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps(body).encode()


#: Hints added to a code's message (unless the message already says it), in both paths.
HINTS = {
    "no_engine": (
        "no engine has been built yet; one is built at the API's first start, or start one with "
        "POST /v1/engine/builds (API token needed), then retry"
    ),
}


def http_error(
    code: str, message: str, *, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
    hint: bool = True,
) -> ApiError:
    """The HTTP error for error ``code`` with ``message``: the status and title of the
    code (500 for a code this version does not know), ``code`` in the body, the code's
    hint (unless ``hint`` is False: a message that says better), and ``Retry-After`` on
    a 503."""
    kind = error_class(code)
    shown = HINTS.get(code) if hint else None
    description = f"{message} ({shown})" if shown and shown not in message else message
    all_headers = {"Retry-After": RETRY_AFTER} if kind.status == 503 else {}
    all_headers.update(headers or {})
    return ApiError(kind.status, kind.title, description or code, extra={"code": code, **(extra or {})},
                    headers=all_headers or None)


def _on_recsys_error(req: falcon.Request, resp: falcon.Response, exc: RecsysError, params: dict[str, Any]) -> None:
    if exc.status == 500:  # a fault on our side, not an answer
        logger.error("%s %s failed: %s: %s", req.method, req.path, type(exc).__name__, exc.message)
    raise http_error(exc.code, exc.message) from exc


def _on_missing_files(
    req: falcon.Request, resp: falcon.Response, exc: MissingFiles, params: dict[str, Any]
) -> None:
    raise http_error(exc.code, exc.message, extra={"missing": exc.missing}) from exc


def _on_quality_gate(
    req: falcon.Request, resp: falcon.Response, exc: QualityGate, params: dict[str, Any]
) -> None:
    raise http_error(exc.code, exc.message, extra={
        "metric": exc.metric, "new": exc.new, "current": exc.current, "tolerance": exc.tolerance}) from exc


def _on_store_error(req: falcon.Request, resp: falcon.Response, exc: StoreError, params: dict[str, Any]) -> None:
    logger.error("%s %s failed: %s: %s", req.method, req.path, type(exc).__name__, exc.message)
    raise http_error(exc.code, exc.message) from exc


def _on_unavailable(req: falcon.Request, resp: falcon.Response, exc: Unavailable, params: dict[str, Any]) -> None:
    logger.warning("%s %s: %s", req.method, req.path, exc.message)
    raise http_error(exc.code, exc.message) from exc


def _on_feature_unavailable(
    req: falcon.Request, resp: falcon.Response, exc: FeatureUnavailable, params: dict[str, Any]
) -> None:
    raise http_error(exc.code, exc.message, extra={"features": exc.features, "pools": exc.pools}) from exc


def _on_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]) -> None:
    logger.exception("%s %s failed with an unexpected %s", req.method, req.path, type(exc).__name__)
    raise http_error(
        "internal", f"the server failed while handling {req.method} {req.path}; see the API's logs"
    ) from exc


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Register the JSON error serializer and the error handlers on ``app``."""
    app.set_error_serializer(_serialize)
    app.add_error_handler(Exception, _on_unexpected)
    app.add_error_handler(RecsysError, _on_recsys_error)
    app.add_error_handler(MissingFiles, _on_missing_files)
    app.add_error_handler(QualityGate, _on_quality_gate)
    app.add_error_handler(StoreError, _on_store_error)
    app.add_error_handler(Unavailable, _on_unavailable)
    app.add_error_handler(FeatureUnavailable, _on_feature_unavailable)
