"""Bearer-token authentication for the endpoints that change the engine.

``POST /v1/engine/builds``, ``PUT /v1/engine/archive``, ``POST /v1/engine/rollback`` and
the live-update endpoints (``POST /v1/publications``, ``GET``/``DELETE
/v1/publications/pushed``, ``POST /v1/publications/changes/refused``) need
``Authorization: Bearer <RECSYS_API_TOKEN>``. The token is compared in constant
time. A missing or wrong token gives 401 with ``WWW-Authenticate: Bearer``; with no
token configured (there is no default) these endpoints refuse with 403 and say how to
set one. The other endpoints are open, so that Swagger UI's "Try it out" works
without a token.
"""

from __future__ import annotations

import hmac
from typing import Any

import falcon

from recsys_api.errors import ApiError

__all__ = ["RequireToken", "token_required"]

CHALLENGE = 'Bearer realm="recsys"'


class RequireToken:
    """The token check of one app (its ``RECSYS_API_TOKEN``), callable as a Falcon hook.

    Resources hold it as ``self.require_token`` and decorate the responders that need
    it with ``@falcon.before(token_required)``.
    """

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    def __call__(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]) -> None:
        if self._token is None:
            raise ApiError(
                403, "Forbidden",
                "this endpoint needs an API token, and none is configured: set RECSYS_API_TOKEN on the API "
                "(and on the workers, which upload the engines they build), then restart it",
            )
        header = req.get_header("Authorization") or ""
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not supplied.strip():
            raise ApiError(
                401, "Unauthorized", "send 'Authorization: Bearer <RECSYS_API_TOKEN>' with this request",
                headers={"WWW-Authenticate": CHALLENGE},
            )
        if not hmac.compare_digest(supplied.strip().encode(), self._token):
            raise ApiError(
                401, "Unauthorized", "the bearer token is wrong: use the API's RECSYS_API_TOKEN",
                headers={"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"'},
            )


def token_required(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]) -> None:
    """Falcon ``before`` hook: runs the resource's :class:`RequireToken` (``resource.require_token``)."""
    check = getattr(resource, "require_token", None)
    if not isinstance(check, RequireToken):
        raise TypeError(f"{type(resource).__name__} uses @falcon.before(token_required) without a require_token")
    check(req, resp, resource, params)
