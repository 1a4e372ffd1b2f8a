"""The OpenAPI description of the live-update routes (``/v1/publications...``), merged
into :func:`recsys_api.openapi.build_spec`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recsys.changes import STATUSES

__all__ = ["PUBLICATION_SCHEMAS", "publication_paths"]

JSON = "application/json"
SECURED: list[dict[str, list[str]]] = [{"bearerAuth": []}]
_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": "string", "nullable": True}
_ID = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"^\s*\S"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


PUBLICATION_SCHEMAS: dict[str, Any] = {
    "PushedPublication": {
        "type": "object",
        "description": "a publication record, validated like a source record: `id`, `title`, and an `abstract` "
                       "or a `text`",
        "required": ["id", "title", "abstract"],
        "properties": {
            "id": _ID,
            "title": {"type": "string", "minLength": 1, "pattern": r"^\s*\S"},
            "abstract": {"type": "string", "minLength": 1, "pattern": r"^\s*\S"},
            "text": _NULLABLE_STRING,
            "label": _NULLABLE_STRING,
            "year": {"type": "integer", "minimum": 1, "maximum": 9999, "nullable": True},
            "authors": {"type": "array", "items": _STRING},
            "url": _NULLABLE_STRING,
        },
    },
    "Push": {
        "type": "object",
        "additionalProperties": False,
        "description": "at least one upsert or delete; an id at most once in the whole push",
        "properties": {
            "upsert": {"type": "array", "maxItems": 1000, "items": _ref("PushedPublication")},
            "delete": {"type": "array", "maxItems": 1000, "items": _ID},
        },
    },
    "ChangeAccepted": {
        "type": "object",
        "required": ["change_id", "status", "status_url"],
        "properties": {"change_id": {"type": "integer"}, "status": _STRING, "status_url": _STRING},
    },
    "Change": {
        "type": "object",
        "required": ["change_id", "status", "generation", "created_at", "status_url"],
        "properties": {
            "change_id": {"type": "integer"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "generation": {"type": "integer", "nullable": True,
                           "description": "the engine generation that applied it"},
            "reason": {**_NULLABLE_STRING, "description": "why it was refused or rolled back"},
            "created_at": _STRING, "updated_at": _STRING,
            "cleared": {"type": "boolean", "description": "left out of the pushed set by an operator"},
            "counts": {"type": "object", "properties": {"upserts": {"type": "integer"},
                                                        "deletes": {"type": "integer"}}},
            "upserts": {"type": "array", "items": _STRING},
            "deletes": {"type": "array", "items": _STRING},
            "op": {"type": "string", "enum": ["upsert", "delete"], "description": "with `?id=`"},
            "status_url": _STRING,
        },
    },
    "Changes": {
        "type": "object",
        "required": ["changes", "counts"],
        "properties": {"changes": {"type": "array", "items": _ref("Change")},
                       "counts": {"type": "object", "additionalProperties": {"type": "integer"}}},
    },
    "PushedSet": {
        "type": "object",
        "required": ["changes_through", "pending", "upserts", "deletes"],
        "properties": {
            "changes_through": {"type": "integer"},
            "pending": {"type": "array", "items": {"type": "integer"}},
            "upserts": {"type": "array", "items": {"type": "object"}},
            "deletes": {"type": "array", "items": _STRING},
        },
    },
}


def publication_paths(errors: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The paths, with the spec's error responses (``errors(*codes, e<code>=description)``)."""
    tags = ["publications"]
    return {
        "/v1/publications": {"post": {
            "tags": tags, "summary": "Push publication upserts and deletes (live updates)",
            "operationId": "push", "security": SECURED,
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Push")}}},
            "responses": {
                "202": _ok("Recorded durably; a worker applies it within seconds", _ref("ChangeAccepted"),
                           headers={"Location": {"schema": _STRING}}),
                **errors(400, 401, 403, 413, 415, 503,
                         e400="A record or field is invalid: `field` names it (`upsert[3].title`)."),
            },
        }},
        "/v1/publications/changes": {"get": {
            "tags": tags, "summary": "Pushed changes, newest first", "operationId": "changes",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATUSES)}},
                {"name": "id", "in": "query", "schema": _STRING, "description": "changes of this publication"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 2**62},
                 "description": "changes with a smaller id (paging)"},
            ],
            "responses": {"200": _ok("Changes", _ref("Changes")), **errors(400, 503)},
        }},
        "/v1/publications/changes/{change_id}": {"get": {
            "tags": tags, "summary": "One pushed change", "operationId": "change",
            "parameters": [{"name": "change_id", "in": "path", "required": True, "schema": _STRING}],
            "responses": {"200": _ok("The change", _ref("Change")),
                          **errors(404, 503, e404="No such change (`code: unknown_change`).")},
        }},
        "/v1/publications/changes/refused": {"post": {
            "tags": tags, "summary": "A worker reports an apply it could not upload (its changes are refused)",
            "operationId": "refuseChanges", "security": SECURED,
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "object", "required": ["changes_through", "reason"],
                "properties": {"changes_through": {"type": "integer", "minimum": 0, "maximum": 2**62},
                               "reason": {"type": "string", "minLength": 1}}}}}},
            "responses": {"200": _ok("Marked", {"type": "object", "properties": {"refused": {"type": "integer"}}}),
                          **errors(400, 401, 403, 413, 415, 503)},
        }},
        "/v1/publications/pushed": {
            "get": {
                "tags": tags, "summary": "The pushed set builds merge into the source's records (workers)",
                "operationId": "pushed", "security": SECURED,
                "responses": {"200": _ok("The pushed set", _ref("PushedSet")), **errors(401, 403, 503)},
            },
            "delete": {
                "tags": tags, "summary": "Clear the pushed set once the source has caught up (operators)",
                "operationId": "clearPushed", "security": SECURED,
                "parameters": [{"name": "through", "in": "query", "schema": {"type": "integer", "minimum": 0,
                                                                             "maximum": 2**62},
                                "description": "only the changes up to this id (default: all that are not pending)"}],
                "responses": {"200": _ok("Cleared", {"type": "object", "properties": {
                    "cleared": {"type": "integer"}, "pending": {"type": "integer"}}}),
                    **errors(400, 401, 403, 503)},
            },
        },
    }
