"""Live publication updates: push upserts and deletes, follow their changes.

``POST /v1/publications`` (token) records a change durably (:mod:`recsys.changes`)
and answers 202 before any worker sees it; ``GET /v1/publications/changes`` and
``/changes/{change_id}`` show where each change is. Workers read the pushed set
(``GET /v1/publications/pushed``) and report an apply they could not upload
(``POST /v1/publications/changes/refused``); an operator clears the pushed set once
the source has caught up (``DELETE /v1/publications/pushed``).
"""

from __future__ import annotations

import re
from typing import Any

import falcon

from recsys.changes import STATUSES, ChangeLog
from recsys.domain import Publication
from recsys.errors import InvalidRecord, UnknownChange
from recsys_api.auth import RequireToken, token_required
from recsys_api.body import read_json
from recsys_api.errors import http_error
from recsys_api.live import LiveUpdates

__all__ = ["MAX_ITEMS", "Change", "Changes", "Publications", "Pushed", "RefusedChanges", "validate_push"]

#: Most upserts, and most deletes, in one push.
MAX_ITEMS = 1000
#: Most changes one GET /v1/publications/changes lists.
MAX_LIST = 1000
MAX_ID_CHARS = 256
#: The largest change id (SQLite integers are 64-bit).
MAX_CHANGE_ID = 2**62
_BODY_MAX_BYTES = 64 * 1024
_FIELDS = ("id", "title", "abstract", "text", "full_text", "year", "authors", "label", "url")
_QUOTED = re.compile(r"'([a-z_]+)'")


def _bad(message: str, field: str) -> falcon.HTTPError:
    return http_error("bad_request", message, extra={"field": field})


def validate_push(body: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The upserts (normalised publication records) and deletes (ids) of a push body;
    a 400 naming the record and the field for anything wrong."""
    if not isinstance(body, dict):
        raise _bad('the body must be a JSON object {"upsert": [<publication>, ...], "delete": [<id>, ...]}', "upsert")
    unknown = sorted(set(body) - {"upsert", "delete"})
    if unknown:
        raise _bad(f"unknown field {unknown[0]!r}: a push has 'upsert' and 'delete'", unknown[0])
    raw_upserts, raw_deletes = body.get("upsert", []), body.get("delete", [])
    for name, value in (("upsert", raw_upserts), ("delete", raw_deletes)):
        if not isinstance(value, list):
            raise _bad(f"{name!r} must be a list, got {type(value).__name__}", name)
        if len(value) > MAX_ITEMS:
            raise _bad(f"{name!r} holds {len(value)} items; at most {MAX_ITEMS} per request", name)
    if not raw_upserts and not raw_deletes:
        raise _bad("the push is empty: give at least one publication in 'upsert' or one id in 'delete'", "upsert")
    upserts: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, record in enumerate(raw_upserts):
        where = f"upsert[{n}]"
        if not isinstance(record, dict):
            raise _bad(f"{where} must be a publication object, got {type(record).__name__}", where)
        _check_types(record, where)
        try:
            publication = Publication.from_dict(record)
        except InvalidRecord as exc:
            names = [m for m in _QUOTED.findall(exc.message) if m in _FIELDS and m != "id"] or ["id"]
            field = "abstract" if "neither" in exc.message else names[-1]
            raise _bad(f"{where}: {exc.message}", f"{where}.{field}") from exc
        if publication.id in seen:
            raise _bad(f"{where}: publication {publication.id!r} is upserted twice in this push", f"{where}.id")
        seen.add(publication.id)
        upserts.append(publication.to_dict())
    deletes: list[str] = []
    for n, pid in enumerate(raw_deletes):
        where = f"delete[{n}]"
        if not isinstance(pid, str) or not pid.strip() or len(pid) > MAX_ID_CHARS:
            raise _bad(f"{where} must be a publication id (1 to {MAX_ID_CHARS} characters), got {pid!r}", where)
        pid = pid.strip()
        if pid in seen:
            raise _bad(f"{where}: publication {pid!r} is both upserted and deleted (or deleted twice) in this push",
                       where)
        seen.add(pid)
        deletes.append(pid)
    return upserts, deletes


_TEXT_FIELDS = ("id", "title", "abstract", "text", "full_text", "label", "url")


def _check_types(record: dict[str, Any], where: str) -> None:
    """Stricter than a source file: each known field has its JSON type (strings, a whole
    number year, a list of strings or one string for authors), or is null."""
    for name in _TEXT_FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise _bad(f"{where}: {name!r} must be a string, got {type(value).__name__}", f"{where}.{name}")
    year = record.get("year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
        raise _bad(f"{where}: 'year' must be a whole number, got {year!r}", f"{where}.year")
    authors = record.get("authors")
    if authors is not None and not isinstance(authors, str) and not (
            isinstance(authors, list) and all(isinstance(a, str) for a in authors)):
        raise _bad(f"{where}: 'authors' must be a list of strings", f"{where}.authors")


class Publications:
    """``POST /v1/publications``: record a change, answer 202, send its apply."""

    def __init__(self, live: LiveUpdates, require_token: RequireToken, max_bytes: int) -> None:
        self.live = live
        self.require_token = require_token
        self.max_bytes = max_bytes

    @falcon.before(token_required)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        upserts, deletes = validate_push(read_json(req, self.max_bytes))
        change = self.live.changes.record(upserts, deletes)  # durable before the answer
        self.live.send_apply()  # unreachable broker: logged, re-sent later
        resp.status = falcon.HTTP_202
        resp.location = change["status_url"]
        resp.media = {"change_id": change["change_id"], "status": change["status"],
                      "status_url": change["status_url"]}


class Changes:
    """``GET /v1/publications/changes``: newest first; ``?status=``, ``?id=``, ``?limit=``, ``?before=``."""

    def __init__(self, changes: ChangeLog) -> None:
        self.changes = changes

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _known_params(req, "status", "id", "limit", "before")
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise _bad(f"'status' must be one of {', '.join(STATUSES)}, got {status!r}", "status")
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_LIST, default=100)
        before = req.get_param_as_int("before", min_value=1, max_value=MAX_CHANGE_ID)
        publication_id = req.get_param("id")
        found = self.changes.find(status=status, publication_id=publication_id, limit=limit, before=before)
        resp.media = {"changes": found, "counts": self.changes.counts()}


def _known_params(req: falcon.Request, *names: str) -> None:
    unknown = sorted(set(req.params) - set(names))
    if unknown:
        raise _bad(f"unknown query parameter {unknown[0]!r}: this endpoint takes {', '.join(names)}", unknown[0])


class Change:
    """``GET /v1/publications/changes/{change_id}``."""

    def __init__(self, changes: ChangeLog) -> None:
        self.changes = changes

    def on_get(self, req: falcon.Request, resp: falcon.Response, change_id: str) -> None:
        number = int(change_id) if change_id.isascii() and change_id.isdigit() and len(change_id) < 19 else None
        found = self.changes.get(number) if number is not None else None
        if found is None:
            raise UnknownChange(f"no publication change {change_id!r}: list them with GET /v1/publications/changes")
        resp.media = found


class Pushed:
    """``GET /v1/publications/pushed`` (workers: the pushed set); ``DELETE`` (operators: clear it)."""

    def __init__(self, changes: ChangeLog, require_token: RequireToken) -> None:
        self.changes = changes
        self.require_token = require_token

    @falcon.before(token_required)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.changes.pushed().to_dict()

    @falcon.before(token_required)
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        _known_params(req, "through")
        through = req.get_param_as_int("through", min_value=0, max_value=MAX_CHANGE_ID)
        resp.media = {"cleared": self.changes.clear_pushed(through), "pending": len(self.changes.pending())}


class RefusedChanges:
    """``POST /v1/publications/changes/refused`` (workers): ``{"changes_through", "reason"}``."""

    def __init__(self, changes: ChangeLog, require_token: RequireToken) -> None:
        self.changes = changes
        self.require_token = require_token

    @falcon.before(token_required)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, _BODY_MAX_BYTES)
        through = body.get("changes_through") if isinstance(body, dict) else None
        if isinstance(through, bool) or not isinstance(through, int) or not 0 <= through <= MAX_CHANGE_ID:
            raise _bad(f"'changes_through' must be a whole number from 0 to {MAX_CHANGE_ID}", "changes_through")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason:
            raise _bad("'reason' must say why the apply was refused", "reason")
        resp.media = {"refused": self.changes.mark_refused(through, reason.strip() or reason)}
