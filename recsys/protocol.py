"""The wire contract between the API and the workers (no framework imports).

Actor names, the result and error shapes of task results and the HTTP headers of the
archive endpoints live here, so that recsys_api and recsys_workers agree without
importing each other. The error codes and their HTTP statuses are the one table of
:mod:`recsys.errors` (``ERRORS``).
See docs/architecture.md, "Messages".

A ``recommend`` result is::

    {"engine": {"name": "annoy", "version": "...", "generation": 3},
     "recommendations": [{"publication_id", "title", "score", "label", "year",
                          "evidence": [{"query_sentence", "sentence", "score"}]}]}

Any task failure is a result too: ``{"error": {"code": ..., "message": ...}}``, the
code and message of the RecsysError that says why (:func:`error_result`); the API
answers it with that code's status and title (``recsys.errors.ERRORS``; a code it
does not know is a 500 that keeps the code).

Engine endpoints of the API that workers use:

* ``GET /v1/engine`` → 200 with the current version's manifest (``Manifest.to_dict()``)
  plus ``"generation"`` (int), ``"manifest_sha256"`` (the version's identity: the
  sha256 of its manifest's exact bytes), ``"bytes"`` (its files and manifest),
  ``"installed_at"``, and ``"sha256"`` / ``"size"`` of its full archive, null until
  that has been assembled (do not rely on them); 404 before the first engine.
* ``GET``/``HEAD /v1/engine/files/{sha256}`` → one file of a kept version, or a
  version's manifest bytes (``manifest_sha256``), ``application/octet-stream``, with
  ``ETag: "<sha256>"``; ``Range`` → 206 (resume), ``If-None-Match`` → 304; any other
  name → 404 with ``code: unknown_file``.
* ``GET /v1/engine/archive`` → the current version's full archive (``application/zip``),
  the same bytes every time, with ``ETag: "<version>"`` and the headers below;
  ``If-None-Match`` → 304; ``Range`` → 206.
* ``PUT /v1/engine/archive`` (``Authorization: Bearer <token>``, body = a full or thin
  zip, ``Content-Type: application/zip``) → 201 with the same JSON as ``GET /v1/engine``;
  409 ``missing_files`` (with ``missing``: ``[{"path", "sha256", "size"}]``) when a thin
  one leaves out files the API does not hold.

The broadcast ``engine_updated`` is a Dramatiq message (``Message.encode()``) with
``queue_name`` = the broadcast exchange's name and ``kwargs`` = ``{"generation",
"version", "created_at", "manifest_sha256"}``, published to the fanout exchange
``RECSYS_BROADCAST_EXCHANGE`` (routing key ``""``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recsys.errors import RecsysError

__all__ = [
    "BUILD_ACTOR",
    "ENGINE_UPDATED_ACTOR",
    "HEADER_GENERATION",
    "HEADER_SHA256",
    "HEADER_VERSION",
    "RECOMMEND_ACTOR",
    "RECOMMEND_BATCH_ACTOR",
    "error_of",
    "error_result",
]

#: ``recommend(request)``: request = the validated POST /v1/recommendations body
#: plus ``min_generation`` (the API's current generation, or None).
RECOMMEND_ACTOR = "recommend"
#: ``recommend_batch(request)``: request = ``{"queries": [...], "min_generation", "strict"}``,
#: each query a validated body, or the ``{"error": {"code", "message", "field"}}`` the API
#: found it with (passed through, so that a polled result has every item). The result is
#: ``{"engine": {...}, "results": [{"recommendations": [...]} | {"error": {...}}]}`` in
#: order; the whole task fails (an error result) only when no query can be answered at all
#: (no engine, an engine that cannot be loaded).
RECOMMEND_BATCH_ACTOR = "recommend_batch"
#: ``build_index()``: fetch every publication, build, pack, upload.
BUILD_ACTOR = "build_index"
#: ``engine_updated(generation, version, created_at, manifest_sha256)``: the broadcast
#: (a first-wave API sent ``sha256``, its archive's, instead of ``manifest_sha256``).
ENGINE_UPDATED_ACTOR = "engine_updated"

#: Headers of ``GET /v1/engine/archive`` (besides ``ETag: "<version>"``); ``X-Recsys-Sha256``
#: is the full archive's sha256 (also on an upload's and a rollback's 201/200 once assembled).
HEADER_GENERATION = "X-Recsys-Generation"
HEADER_SHA256 = "X-Recsys-Sha256"
HEADER_VERSION = "X-Recsys-Version"


def error_result(error: RecsysError) -> dict[str, Any]:
    """The result a task stores when it fails: ``{"error": {"code", "message"}}``."""
    return {"error": {"code": error.code, "message": error.message}}


def error_of(result: object) -> dict[str, str] | None:
    """The ``{"code", "message"}`` of an error result, or None for a success."""
    if isinstance(result, Mapping) and isinstance(result.get("error"), Mapping):
        error = result["error"]
        return {"code": str(error.get("code", "internal")), "message": str(error.get("message", ""))}
    return None
