"""The OpenAPI description of the operator console's routes and of task progress
(merged into :func:`recsys_api.openapi.build_spec`)."""

from __future__ import annotations

from typing import Any

__all__ = ["CONSOLE_SCHEMAS", "console_paths"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NUMBER = {"type": "number"}
_NULLABLE_NUMBER = {"type": "number", "nullable": True}
_NULLABLE_INT = {"type": "integer", "nullable": True}
_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": "string", "nullable": True}
_OBJECT = {"type": "object"}
_NULLABLE_OBJECT = {"type": "object", "nullable": True}

CONSOLE_SCHEMAS: dict[str, Any] = {
    "Progress": {
        "type": "object",
        "description": "where a running task stands (builds report it; kept as long as the result)",
        "required": ["stage", "done", "total", "rate", "eta_s"],
        "properties": {
            "stage": {"type": "string", "example": "encode",
                      "description": "the step: fetch, split, encode, index, ..."},
            "done": {"type": "integer"},
            "total": {**_NULLABLE_INT, "description": "null while unknown"},
            "rate": {**_NUMBER, "description": "per second since the stage began"},
            "eta_s": {**_NULLABLE_NUMBER, "description": "seconds the stage still needs at that rate"},
            "started_at": _STRING,
            "updated_at": _STRING,
        },
    },
    "ConsoleState": {
        "type": "object",
        "required": ["now", "refresh_ms", "engine", "cluster", "rollouts", "builds", "queues"],
        "properties": {
            "now": _STRING,
            "refresh_ms": {"type": "integer"},
            "engine": {"type": "object", "required": ["current", "previous"], "properties": {
                "current": _NULLABLE_OBJECT, "previous": _NULLABLE_OBJECT,
            }},
            "cluster": {"type": "object", "required": ["generation", "version", "converged", "machines"],
                        "properties": {
                            "generation": _NULLABLE_INT, "version": _NULLABLE_STRING,
                            "converged": {"type": "boolean"}, "heartbeat_interval": _NUMBER,
                            "machines": {"type": "array", "items": _OBJECT,
                                         "description": "worker processes by host and data dir, each marked "
                                                        "stale or lagging"},
                        }},
            "rollouts": {"type": "array", "items": _OBJECT},
            "builds": {"type": "object", "required": ["running", "queued", "last"], "properties": {
                "running": _NULLABLE_OBJECT, "queued": _NULLABLE_STRING,
                "last": {"type": "array", "items": _OBJECT},
            }},
            "queues": {"type": "object", "required": ["source", "queues"], "properties": {
                "source": {"type": "string", "enum": ["management", "amqp", "embedded", "n/a"]},
                "error": _NULLABLE_STRING,
                "at": _STRING,
                "queues": {"type": "array", "items": {"type": "object", "required": ["name", "ready"], "properties": {
                    "name": _STRING, "ready": _NULLABLE_INT, "unacked": _NULLABLE_INT, "consumers": _NULLABLE_INT,
                    "queues": {"type": "integer"},
                }}},
            }},
        },
    },
}


def console_paths(errors: Any) -> dict[str, Any]:
    """The console's paths; ``errors(*codes)`` makes the error responses."""
    return {
        "/console": {"get": {
            "tags": ["operations"], "summary": "The operator console (a page; no token needed to read it)",
            "operationId": "console",
            "responses": {"200": {"description": "HTML page",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
        "/v1/console/state": {"get": {
            "tags": ["operations"], "summary": "What the console shows: engine, workers, rollout, builds, queues",
            "operationId": "consoleState",
            "responses": {"200": {"description": "The cluster's state",
                                  "content": {"application/json": {"schema": _ref("ConsoleState")}}},
                          **errors(503)},
        }},
    }
