"""``recsys recommend --api URL``: the queries sent to a running API (``recsys serve`` or a deployment).

One query goes to ``POST /v1/recommendations``; several (or ``--batch``) go to
``POST /v1/recommendations/batch`` in groups of at most ``MAX_QUERIES``. Each answer is
a result ``{"engine", "recommendations"}`` or ``{"error": {"code", "message"}}``, as the
local mode gives. Plain ``urllib``: the core installs no HTTP client.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from recsys.errors import Unavailable
from recsys.query_limits import MAX_QUERIES

__all__ = ["recommend_remote"]

#: Seconds to wait for the API's answer (it waits for its workers up to RECSYS_REQUEST_TIMEOUT).
TIMEOUT = 120.0


def _post(base: str, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        base.rstrip("/") + path, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - the user's URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"description": f"HTTP {exc.code} {exc.reason}"}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unavailable(f"the API at {base} could not be reached ({reason}); is it running?") from exc


def _error(status: int, body: Any) -> dict[str, Any]:
    body = body if isinstance(body, dict) else {}
    code = body.get("code") or ("bad_request" if status == 400 else f"http_{status}")
    return {"error": {"code": code, "message": str(body.get("description") or body.get("title") or status)}}


def recommend_remote(base: str, queries: list[dict[str, Any]], *, batch: bool) -> list[dict[str, Any]]:
    """Each query's result or error, from the API at ``base``."""
    if not batch:
        answers = []
        for query in queries:
            status, body = _post(base, "/v1/recommendations", query)
            answers.append(body if status == 200 else _error(status, body))
        return answers
    answers = []
    for first in range(0, len(queries), MAX_QUERIES):
        group = queries[first:first + MAX_QUERIES]
        status, body = _post(base, "/v1/recommendations/batch", {"queries": group})
        if status != 200:
            answers.extend(_error(status, body) for _ in group)
            continue
        for item in body["results"]:
            answers.append(item if "error" in item else {"engine": body["engine"], **item})
    return answers
