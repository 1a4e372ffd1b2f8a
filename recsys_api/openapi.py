"""The API's OpenAPI 3.0.3 description, served at ``GET /openapi.json`` and shown at ``/docs``.

OpenAPI 3.0 (Swagger UI 4 cannot show 3.1). There is no ``servers`` entry, so "Try it
out" calls the API that served the page. The request schema of
``POST /v1/recommendations`` is the very schema :mod:`recsys_api.validation` validates with;
a test checks that every route of the app is described here and the other way round,
and a schemathesis run checks the app against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recsys import __version__, protocol
from recsys.query_limits import (
    MAX_EXCLUDE_IDS,
    MAX_ID_CHARS,
    MAX_K,
    MAX_LABEL_CHARS,
    MAX_QUERIES,
    MAX_TEXT_CHARS,
    MIN_K,
)
from recsys_api import prefer
from recsys_api.openapi_console import CONSOLE_SCHEMAS, console_paths
from recsys_api.openapi_publications import PUBLICATION_SCHEMAS, publication_paths
from recsys_api.schemas import SCHEMAS

__all__ = ["build_spec"]

JSON = "application/json"

EXAMPLE_LIKE = "Convolutional networks learn image features from labelled photographs."
EXAMPLE_UNLIKE = "We sequence the genome of a plant."
EXAMPLE_TEXT = (
    "We train a neural network to classify images and study how the size of the training set "
    "affects its accuracy."
)

_ERRORS = {
    400: "The request is malformed: the description names the field and the rule.",
    401: "No bearer token, or a wrong one.",
    403: "No API token is configured on the API (set RECSYS_API_TOKEN).",
    404: "Not found.",
    409: "Conflict with the current state.",
    411: "A chunked body on a server that cannot read one: send Content-Length.",
    413: "The body is larger than the limit.",
    415: "Wrong Content-Type.",
    416: "The Range selects no byte of the file (it starts at or past its end).",
    500: "A task or the API failed; the description says which.",
    503: "Redis, RabbitMQ or the engine is not available yet; retry after a few seconds.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"content": {JSON: {"schema": schema, **extra}}}


def _ok(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"description": description, **_json(schema), **extra}


def _errors(*codes: int, **descriptions: str) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for code in codes:
        response: dict[str, Any] = {
            "description": descriptions.get(f"e{code}", _ERRORS[code]), **_json(_ref("Error"))
        }
        if code == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}}
        if code == 503:
            response["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        if code == 416:
            response["headers"] = {"Content-Range": {"description": "`bytes */<size>`", "schema": {"type": "string"},
                                                     "required": True}}
        responses[str(code)] = response
    return responses


def _location(required: bool = True) -> dict[str, Any]:
    return {"Location": {"description": "where to poll the task", "schema": {"type": "string"}, "required": required}}


def _archive_headers(*, assembled: bool = True) -> dict[str, Any]:
    text = {"schema": {"type": "string"}, "required": True}
    sha256 = "sha256 of the full archive file (hex)" + ("" if assembled else ", once it has been assembled")
    return {
        "ETag": {"description": "the engine's version, quoted", **text},
        protocol.HEADER_SHA256: {"description": sha256, **text, "required": assembled},
        protocol.HEADER_GENERATION: {"description": "the API's generation of this engine", **text},
        protocol.HEADER_VERSION: {"description": "the engine's version", **text},
    }


def _file_headers(*, cache: str, ranged: bool = False) -> dict[str, Any]:
    text = {"schema": {"type": "string"}, "required": True}
    headers = {
        "Content-Length": {"description": "bytes of the body", "schema": {"type": "integer"}, "required": True},
        "Accept-Ranges": {"description": "`bytes`", **text},
        "Cache-Control": {"description": cache, **text},
    }
    if ranged:
        headers["Content-Range"] = {"description": "`bytes <first>-<last>/<size>`", **text}
    return headers


def _conditional_parameters(tag: str) -> list[dict[str, Any]]:
    def header(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "header", "required": False, "schema": {"type": "string"},
                "description": description}

    return [
        header("If-None-Match", f"{tag}, quoted (or `*`): 304 if it is this one"),
        header("Range", "one range, `bytes=<first>-`, `bytes=<first>-<last>` or `bytes=-<suffix length>`: 206 "
                        "with that part; one that starts past the end: 416; one that does not parse, or several: "
                        "the whole file"),
        header("If-Range", f"{tag}, quoted: the Range applies only if the file is still this one (else 200, the "
                           "whole file)"),
    ]


def _file_operation(method: str) -> dict[str, Any]:
    body = {} if method == "head" else {
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    }
    immutable = "`public, max-age=31536000, immutable`: a name never serves other bytes"
    tag = {"ETag": {"description": "the sha256, quoted", "schema": {"type": "string"}, "required": True}}
    return {
        "tags": ["engine"],
        "summary": ("Headers of" if method == "head" else "Download") + " one file of a kept engine version, "
                   "or a version's manifest",
        "description": (
            "The files of the current and the previous kept versions (`files[].sha256` in `GET /v1/engine`) and "
            "each one's exact `manifest.json` bytes (`manifest_sha256`), by sha256: what workers download "
            "when they lack a file. Streamed; resumable with `Range`; cacheable forever."
        ),
        "operationId": "headFile" if method == "head" else "getFile",
        "parameters": [
            {"name": "sha256", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
             "description": "the file's sha256 (64 lowercase hex digits); any other name is a 404"},
            *_conditional_parameters("the sha256"),
        ],
        "responses": {
            "200": {"description": "The file", "headers": {**tag, **_file_headers(cache=immutable)}, **body},
            "206": {"description": "The part of the file the Range asked for",
                    "headers": {**tag, **_file_headers(cache=immutable, ranged=True)}, **body},
            "304": {"description": "The file is the one given in If-None-Match", "headers": tag},
            **_errors(404, 416, 503, e404="No kept engine version has a file (or manifest) with this sha256, or the "
                                          "name is not a sha256 (`code: unknown_file`)."),
        },
    }


def _archive_get() -> dict[str, Any]:
    zipped = {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}
    revalidate = "`no-cache`: the URL serves the current version; revalidate with the ETag"
    return {
        "tags": ["engine"], "summary": "Download the current engine as a full archive", "operationId": "getArchive",
        "description": (
            "A self-contained zip of the current version (manifest and every file), assembled from the stored "
            "files on the first request for a version and kept: the same bytes every time, so the ETag and Range "
            "requests hold. `recsys verify` accepts it; workers that have a previous version download only the "
            "files they lack, from `/v1/engine/files/{sha256}`."
        ),
        "parameters": _conditional_parameters("a version"),
        "responses": {
            "200": {"description": "The archive (zip)",
                    "headers": {**_archive_headers(), **_file_headers(cache=revalidate)}, **zipped},
            "206": {"description": "The part of the archive the Range asked for",
                    "headers": {**_archive_headers(), **_file_headers(cache=revalidate, ranged=True)}, **zipped},
            "304": {"description": "The current version is the one given in If-None-Match",
                    "headers": _archive_headers()},
            **_errors(404, 416, 503, e404="No engine has been installed yet."),
        },
    }


SECURED: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _request_examples(example: Mapping[str, str] | None) -> dict[str, Any]:
    """The "Try it out" bodies: on the served engine's own corpus (its manifest's
    ``example``) when it has one, else on :data:`EXAMPLE_TEXT`."""
    text = (example or {}).get("text") or EXAMPLE_TEXT
    examples: dict[str, Any] = {
        "text": {"summary": "publications similar to a text", "value": {"text": text, "k": 5}},
        "filtered": {"summary": "with filters",
                     "value": {"text": text, "k": 3, "year_min": 2000, "strict": False}},
    }
    publication_id = (example or {}).get("publication_id")
    if publication_id:
        examples["publication"] = {"summary": "publications similar to a stored one",
                                   "value": {"publication_id": publication_id, "k": 5}}
    like: dict[str, Any] = {"like": [{"text": text}, {"publication_id": publication_id}] if publication_id else
                            [{"text": text}, {"text": EXAMPLE_LIKE}]}
    if example is None:
        like["unlike"] = [{"text": EXAMPLE_UNLIKE}]
    examples["like"] = {"summary": "more like these, diverse, above a score, the second page",
                        "value": {**like, "diversity": 0.3, "min_score": 0.2, "offset": 5, "k": 5}}
    return examples


def _recommendations(example: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "post": {
            "tags": ["recommendations"],
            "summary": "Recommend publications for a text or a stored publication",
            "description": (
                "Sends a `recommend` task to the workers and waits for its result (up to "
                "RECSYS_REQUEST_TIMEOUT seconds; 504 with the task id after that). With "
                "`Prefer: respond-async` it answers 202 at once with the task to poll."
            ),
            "operationId": "recommend",
            "parameters": [{
                "name": "Prefer", "in": "header", "required": False,
                "description": "`respond-async`: answer 202 with the task instead of waiting (RFC 7240); "
                               "other well-formed preferences are ignored, a malformed header is a 400",
                "schema": {"type": "string", "pattern": prefer.PATTERN},
            }],
            "requestBody": {
                "required": True,
                "content": {JSON: {
                    "schema": _ref("RecommendationRequest"),
                    "examples": _request_examples(example),
                }},
            },
            "responses": {
                "200": _ok("The engine's recommendations, best first", _ref("RecommendationResult")),
                "202": {"description": "Accepted (`Prefer: respond-async`): poll `status_url`",
                        "headers": {**_location(), "Preference-Applied": {"schema": {"type": "string"}}},
                        **_json(_ref("TaskAccepted"))},
                **_errors(400, 404, 411, 413, 415, 500,
                          e400="The body breaks a rule of the schema (the description names the field and the "
                               "rule), is not UTF-8 or not strict JSON, or the Prefer header is malformed.",
                          e404="The engine holds no publication with this `publication_id` (or one of `like` / "
                               "`unlike`) (`code: unknown_publication`).",
                          e415="Not `Content-Type: application/json`, or a charset other than utf-8.",),
                "503": {"description": "No engine has been built yet (`code: no_engine`; while the first build "
                                       "runs, with its `task_id` and `status_url`), a live worker pool of an "
                                       "older version lacks a feature the request uses (`code: "
                                       "feature_unavailable`, with `features` and `pools`: upgrade the workers "
                                       "first), or Redis/RabbitMQ is unreachable.",
                        "headers": {"Retry-After": {"schema": {"type": "string"}}}, **_json(_ref("Unavailable"))},
                "504": {"description": "No worker answered in time (the task may still finish: poll `status_url`), "
                                       "or the worker itself timed out (`code: timeout`)",
                        "headers": _location(required=False), **_json(_ref("TaskTimeout"))},
            },
        }
    }


def _batch(example: Mapping[str, str] | None) -> dict[str, Any]:
    single = _recommendations(example)["post"]
    text = (example or {}).get("text") or EXAMPLE_TEXT
    return {
        "post": {
            "tags": ["recommendations"],
            "summary": f"Answer 1 to {MAX_QUERIES} recommendation queries at once",
            "description": (
                "Sends one `recommend_batch` task for every query (the default engine encodes all their sentences "
                "in one call) and waits for its result. `results` holds one item per query, in order: "
                "`{\"recommendations\": [...]}`, or `{\"error\": {\"code\", \"message\"}}` for a query "
                "that breaks a rule of `RecommendationRequest` (`bad_request`, with `field`) or failed "
                "(`unknown_publication`, ...); the others are answered all the same. A 400 is only for a bad "
                "envelope. With `Prefer: respond-async` it answers 202 with the task to poll."
            ),
            "operationId": "recommendBatch",
            "parameters": single["parameters"],
            "requestBody": {
                "required": True,
                "content": {JSON: {
                    "schema": _ref("BatchRequest"),
                    "examples": {"two": {"summary": "two queries, the second one invalid", "value": {
                        "queries": [{"text": text, "k": 3}, {"text": text, "k": 0}]}}},
                }},
            },
            "responses": {
                "200": _ok("One result or error per query, in order", _ref("BatchResult")),
                "202": single["responses"]["202"],
                **_errors(400, 411, 413, 415, 500, 503,
                          e400="The body is not an object with `queries`, a list of 1 to 100 queries (each query's "
                               "own faults are error items of the 200 answer), is not UTF-8 or not strict JSON, or "
                               "the Prefer header is malformed.",
                          e415="Not `Content-Type: application/json`, or a charset other than utf-8.",
                          e503="No engine has been built yet, a live worker pool lacks a feature the batch uses "
                               "(`code: feature_unavailable`), or Redis/RabbitMQ is unreachable."),
                "504": single["responses"]["504"],
            },
        }
    }


def _paths(example: Mapping[str, str] | None) -> dict[str, Any]:
    return {
        "/health": {"get": {
            "tags": ["operations"], "summary": "Liveness: the process answers (no dependency is checked)",
            "operationId": "health", "responses": {"200": _ok("Alive", _ref("Health"))},
        }},
        "/ready": {"get": {
            "tags": ["operations"], "summary": "Readiness: broker, result store and engine",
            "operationId": "ready",
            "responses": {
                "200": _ok("Ready", _ref("Ready")),
                "503": {"description": "Not ready: the description and `checks` name the failing dependencies",
                        "headers": {"Retry-After": {"schema": {"type": "string"}}}, **_json(_ref("NotReady"))},
            },
        }},
        "/metrics": {"get": {
            "tags": ["operations"], "summary": "Prometheus metrics", "operationId": "metrics",
            "responses": {"200": {"description": "Prometheus text exposition format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/openapi.json": {"get": {
            "tags": ["operations"], "summary": "This OpenAPI description", "operationId": "openapi",
            "responses": {"200": _ok("OpenAPI 3.0 document", {"type": "object"})},
        }},
        "/docs": {"get": {
            "tags": ["operations"], "summary": "Swagger UI for this API", "operationId": "docs",
            "responses": {"200": {"description": "HTML page",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
        "/v1/recommendations": _recommendations(example),
        "/v1/recommendations/batch": _batch(example),
        "/v1/tasks/{task_id}": {"get": {
            "tags": ["recommendations"], "summary": "A task's status and result", "operationId": "getTask",
            "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "the `task_id` of a 202 or 504 answer"}],
            "responses": {
                "200": _ok("`pending`, `succeeded` with the result, or `failed` with the error", _ref("TaskStatus")),
                **_errors(404, 503, e404="No such task: never started here, or its result expired."),
            },
        }},
        "/v1/engine": {"get": {
            "tags": ["engine"], "summary": "The current engine's manifest", "operationId": "getEngine",
            "responses": {
                "200": _ok("The current version's manifest with its generation, manifest_sha256 and bytes",
                           _ref("EngineManifest")),
                **_errors(404, e404="No engine has been installed yet."),
            },
        }},
        "/v1/engine/files/{sha256}": {"get": _file_operation("get"), "head": _file_operation("head")},
        "/v1/engine/archive": {
            "get": _archive_get(),
            "put": {
                "tags": ["engine"],
                "summary": "Upload an engine archive (full or thin); it becomes current with the next generation",
                "description": (
                    "Streams the zip to a temporary file under the size limit (RECSYS_ARCHIVE_MAX_BYTES), verifies "
                    "it, refuses it unless its `created_at` is newer than the current version's, stores its files "
                    "by sha256 (keeping the previous versions) and broadcasts `engine_updated` to the workers. A "
                    "*thin* archive lists every file in its manifest but carries only those the API lacks; a file "
                    "it leaves out that the API does not hold is a 409 `missing_files` listing every such file."
                ),
                "operationId": "putArchive", "security": SECURED,
                "parameters": [{
                    "name": "force", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
                    "description": "Make it current even when its quality comparison is worse than the current "
                                   "engine's by more than RECSYS_QUALITY_TOLERANCE (the quality gate).",
                }],
                "requestBody": {"required": True, "content": {
                    "application/zip": {"schema": {"type": "string", "format": "binary"}},
                }},
                "responses": {
                    "201": {"description": "Installed as current", "headers": _archive_headers(assembled=False),
                            **_json(_ref("EngineManifest"))},
                    **_errors(400, 401, 403, 413, 415, 503,
                              e400="The archive failed verification (the reason is in the description)."),
                    "409": {"description": "The archive is not newer than the current one (`code: not_newer`); "
                                           "it is thin and leaves out files the API does not hold (`code: "
                                           "missing_files`, with `missing`): upload the full archive; or its "
                                           "quality comparison is worse than the current engine's (`code: "
                                           "quality_gate`, with `metric`, `new`, `current`, `tolerance`): check "
                                           "the corpus, or upload with `?force=true`",
                            **_json(_ref("UploadConflict"))},
                },
            },
        },
        "/v1/engine/rollback": {"post": {
            "tags": ["engine"], "summary": "Make the previous version current again, as a new generation",
            "operationId": "rollback", "security": SECURED,
            "responses": {
                "200": {"description": "The version now current", "headers": _archive_headers(assembled=False),
                        **_json(_ref("EngineManifest"))},
                **_errors(401, 403, 409, 503, e409="There is no previous version (`code: no_previous_version`)."),
            },
        }},
        "/v1/engine/builds": {"post": {
            "tags": ["engine"], "summary": "Start building a new engine (build_index)", "operationId": "build",
            "security": SECURED,
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"force": {
                    "type": "boolean", "default": False,
                    "description": "The build's upload passes the quality gate (PUT /v1/engine/archive?force=true).",
                }},
            }}}},
            "responses": {
                "202": {"description": "Sent: poll `status_url`", "headers": _location(),
                        **_json(_ref("TaskAccepted"))},
                **_errors(400, 401, 403, 409, 413, 415, 503, e400="The body is not `{\"force\": true|false}`.",
                          e409="A build is already queued or running (`code: build_running`)."),
            },
        }},
        "/v1/workers": {"get": {
            "tags": ["engine"], "summary": "Live workers, whether they serve the current engine, and rollouts",
            "operationId": "workers",
            "responses": {"200": _ok("Workers", _ref("Workers")), **_errors(503)},
        }},
        "/v1/engines": {"get": {
            "tags": ["engine"], "summary": "Engine plugins installed beside the API", "operationId": "engines",
            "responses": {"200": _ok("Engine plugins", _ref("Engines"))},
        }},
        **console_paths(_errors),
        **publication_paths(_errors),
    }


def build_spec(example: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The OpenAPI document (a fresh dict each call). ``example``: the current engine's
    example query (``Manifest.example``: ``text``, ``publication_id``) for the request
    examples; None: generic ones."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "recsys API",
            "version": __version__,
            "description": (
                "Recommends scientific publications for a piece of text. Recommendations are computed by "
                "workers behind a queue; the engine endpoints manage the engine they use.\n\n"
                f"Limits: `k` {MIN_K}-{MAX_K}; `text` up to {MAX_TEXT_CHARS} characters after trimming; ids up to "
                f"{MAX_ID_CHARS} characters; labels up to {MAX_LABEL_CHARS}; up to {MAX_EXCLUDE_IDS} "
                "`exclude_ids`.\n\nBuilds, uploads, rollbacks and live updates (`POST /v1/publications`, the pushed "
                "set) need `Authorization: Bearer <RECSYS_API_TOKEN>`."
                "\n\nEvery `GET` also answers `HEAD`: the same status and headers, no body."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "tags": [
            {"name": "recommendations", "description": "Ask for recommendations and follow tasks"},
            {"name": "engine", "description": "The engine: manifest, archive, rollout, builds, workers"},
            {"name": "publications", "description": "Live updates: push publications, follow their changes"},
            {"name": "operations", "description": "Health, readiness, metrics, documentation"},
        ],
        "paths": _paths(example),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "the API token, RECSYS_API_TOKEN"}},
            "schemas": {**SCHEMAS, **CONSOLE_SCHEMAS, **PUBLICATION_SCHEMAS},
        },
    }
