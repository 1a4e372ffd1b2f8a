"""HTTP errors of the API: one JSON shape, and recsys errors mapped once.

Every error body is JSON ``{"title", "description"}``, plus fields that help the
client act (``task_id`` and ``status_url`` on a 504, ``checks`` on a failed
``/ready``). :func:`install` registers the serializer and the handlers on an app:

=====================================  ======  ==========================================
recsys error                           status  why
=====================================  ======  ==========================================
InvalidQuery                           400     the request is malformed
UnknownPublication                     404     the engine holds no such publication
ArchiveTooLarge                        413     an upload is larger than the limit
InvalidArchive                         400     an uploaded archive failed verification
ArchiveConflict                        409     not newer than the current one / no previous
BuildBusy                              409     a build is already queued or running
NoEngine                               503     nothing to answer with yet
Unavailable                            503     Redis or RabbitMQ cannot be reached
LockTimeout                            503     the archive store is busy
any other RecsysError                  500     a server-side fault, logged
any other exception                    500     logged with its traceback
=====================================  ======  ==========================================
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any

import falcon

from recsys.errors import (
    InvalidArchive,
    InvalidQuery,
    LockTimeout,
    NoEngine,
    RecsysError,
    Unavailable,
    UnknownPublication,
)
from recsys_api.archive_store import ArchiveConflict, ArchiveTooLarge
from recsys_api.builds import BuildBusy

__all__ = ["ApiError", "install", "status_line"]

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


def _http_error(code: int, title: str, exc: RecsysError, retry: bool = False) -> falcon.HTTPError:
    headers = {"Retry-After": RETRY_AFTER} if retry else None
    return ApiError(code, title, exc.message, extra={"code": exc.code}, headers=headers)


def _on_recsys_error(req: falcon.Request, resp: falcon.Response, exc: RecsysError, params: dict[str, Any]) -> None:
    if isinstance(exc, ArchiveTooLarge):
        raise _http_error(413, "Archive too large", exc) from exc
    if isinstance(exc, ArchiveConflict):
        raise _http_error(409, "Conflict", exc) from exc
    if isinstance(exc, BuildBusy):
        raise _http_error(409, "Build already running", exc) from exc
    if isinstance(exc, UnknownPublication):
        raise _http_error(404, "Unknown publication", exc) from exc
    if isinstance(exc, InvalidQuery):
        raise _http_error(400, "Invalid request", exc) from exc
    if isinstance(exc, InvalidArchive):
        raise _http_error(400, "Invalid archive", exc) from exc
    if isinstance(exc, NoEngine):
        raise _http_error(503, "No engine yet", exc, retry=True) from exc
    if isinstance(exc, Unavailable):
        logger.warning("%s %s: %s", req.method, req.path, exc.message)
        raise _http_error(503, "Service unavailable", exc, retry=True) from exc
    if isinstance(exc, LockTimeout):
        raise _http_error(503, "Archive store busy", exc, retry=True) from exc
    logger.error("%s %s failed: %s: %s", req.method, req.path, type(exc).__name__, exc.message)
    raise _http_error(500, "Internal error", exc) from exc


def _on_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]) -> None:
    logger.exception("%s %s failed with an unexpected %s", req.method, req.path, type(exc).__name__)
    raise ApiError(
        500, "Internal error", f"the server failed while handling {req.method} {req.path}; see the API's logs"
    ) from exc


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Register the JSON error serializer and the error handlers on ``app``."""
    app.set_error_serializer(_serialize)
    app.add_error_handler(Exception, _on_unexpected)
    app.add_error_handler(RecsysError, _on_recsys_error)
