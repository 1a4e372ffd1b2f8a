"""``HEAD`` wherever ``GET`` works (RFC 9110, 9.3.2): the router that maps it.

:class:`HeadRouter` is Falcon's CompiledRouter with one change to how a resource's
methods are mapped (:meth:`~falcon.routing.CompiledRouter.map_http_methods`, Falcon's
documented hook for that): a resource with a GET responder and no HEAD responder of
its own answers HEAD with the GET responder (:func:`head_as_get`). Falcon sends no body
for HEAD and keeps the headers (``Content-Length`` included), so HEAD answers the same
status and headers as GET. A resource that has its own ``on_head`` (the engine files)
keeps it; static routes (``/docs/assets/``, ``/console/assets/``) answer HEAD by
themselves. :class:`HeadStreams` closes the stream (a file) that a HEAD's responder
opened, which Falcon would leave to the garbage collector.
"""

from __future__ import annotations

from typing import Any

import falcon
from falcon import inspect
from falcon.routing import CompiledRouter

__all__ = ["HeadRouter", "HeadStreams", "head_as_get"]


def head_as_get(get: Any) -> Any:
    """The HEAD responder of a resource without one: its GET responder (Falcon drops the body)."""

    def head_as_get(req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        get(req, resp, **params)

    head_as_get.__doc__ = f"HEAD: {getattr(get, '__qualname__', 'GET')} without its body."
    return head_as_get


class HeadRouter(CompiledRouter):
    """A CompiledRouter whose routes answer HEAD wherever they answer GET."""

    def map_http_methods(self, resource: object, **kwargs: Any) -> dict[str, Any]:
        method_map: dict[str, Any] = super().map_http_methods(resource, **kwargs)
        if "GET" in method_map and "HEAD" not in method_map:
            method_map["HEAD"] = head_as_get(method_map["GET"])
        return method_map


class HeadStreams:
    """Middleware: a HEAD answer's stream is closed, not sent (its headers stay)."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if req.method != "HEAD" or resp.stream is None:
            return
        stream, resp.stream = resp.stream, None
        close = getattr(stream, "close", None)
        if close is not None:
            close()


# falcon.inspect (the spec-versus-router test, `falcon-inspect-app`) walks it as the router it is.
inspect.register_router(HeadRouter)(inspect.inspect_compiled_router)
