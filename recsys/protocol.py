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

Mixed versions (docs/operations.md, *Upgrades*): each worker process's heartbeat
(:class:`recsys.cluster.WorkerInfo`) carries ``protocol`` (:data:`PROTOCOL_VERSION`),
``features`` (:data:`WORKER_FEATURES`: the request features of :data:`FEATURES` it
implements) and ``recsys_version``. A heartbeat without ``features`` is a worker of an
older version: it supports none of them (:func:`heartbeat_features`). The API asks
:func:`needed_features` which features a request body uses and answers 503
``feature_unavailable`` while a live worker pool lacks one of them (an older worker
ignores a field it does not know: it would answer, wrongly, instead of refusing).

Live-update endpoints of the API that workers use (``Authorization: Bearer <token>``):

* ``GET /v1/publications/pushed`` → 200 ``{"changes_through", "pending": [change ids],
  "upserts": [records], "deletes": [ids]}`` (:class:`recsys.changes.PushedSet`); a 404
  without a ``code`` is an API without live updates (an empty pushed set).
* ``POST /v1/publications/changes/refused`` with ``{"changes_through", "reason"}`` → 200
  ``{"refused": n}``: the pending changes up to that id could not be applied.

An upload's manifest says ``kind`` (``"build"`` or ``"apply"``) and ``changes_through``
(the highest change id its corpus includes); the API marks changes applied when that
version becomes current.

The broadcast ``engine_updated`` is a Dramatiq message (``Message.encode()``) with
``queue_name`` = the broadcast exchange's name and ``kwargs`` = ``{"generation",
"version", "created_at", "manifest_sha256"}``, published to the fanout exchange
``RECSYS_BROADCAST_EXCHANGE`` (routing key ``""``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from recsys.errors import RecsysError

__all__ = [
    "APPLY_ACTOR",
    "BUILD_ACTOR",
    "ENGINE_UPDATED_ACTOR",
    "FEATURES",
    "HEADER_GENERATION",
    "HEADER_SHA256",
    "HEADER_VERSION",
    "PROTOCOL_VERSION",
    "RECOMMEND_ACTOR",
    "RECOMMEND_BATCH_ACTOR",
    "WORKER_FEATURES",
    "error_of",
    "error_result",
    "heartbeat_features",
    "needed_features",
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
#: ``apply_changes()``: apply the pending pushed publication changes as an incremental
#: build of the current engine (coalescing them, under the build lock), upload it thin.
APPLY_ACTOR = "apply_changes"
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


#: The version of this contract a worker's heartbeat reports: 1 for workers whose
#: heartbeat has no ``protocol`` (no ``features`` either), 2 since API 1.1.
PROTOCOL_VERSION: Final = 2

#: The request features that not every worker version has: each is a field of the
#: recommendation request (used when set: see :func:`needed_features`), except
#: ``batch``, the batch endpoint.
FEATURES: Final = ("lexical_weight", "like", "unlike", "diversity", "min_score", "offset", "batch")

#: The features this version's workers implement: what their heartbeats advertise.
#: A feature joins it in the same change that teaches the ``recommend`` actor (or the
#: batch actor) to use it, never before.
WORKER_FEATURES: Final[frozenset[str]] = frozenset(FEATURES)

#: Values of a request field that do not use its feature (an older worker, which
#: ignores the field, answers such a request right): unset, null, an empty list, and
#: the defaults below.
_UNUSED: Final[dict[str, tuple[Any, ...]]] = {"offset": (0,), "diversity": (0,)}


def _uses(name: str, value: Any) -> bool:
    if value is None or value is False or value == []:
        return False
    return value not in _UNUSED.get(name, ())


def needed_features(body: Mapping[str, Any], batch: bool = False) -> set[str]:
    """The features of :data:`FEATURES` that a request ``body`` uses.

    A recommendation request uses a field's feature when the field is set to a value
    other than null, ``[]`` or its default (``offset`` 0, ``diversity`` 0). A batch
    (``batch=True``) needs ``"batch"`` plus the features of its own fields and of each
    query in its ``queries`` list.
    """
    fields = (name for name in FEATURES if name != "batch")
    needed = {name for name in fields if name in body and _uses(name, body[name])}
    if batch:
        needed.add("batch")
        queries = body.get("queries")
        for query in queries if isinstance(queries, list) else ():
            if isinstance(query, Mapping):
                needed |= needed_features(query)
    return needed


def heartbeat_features(heartbeat: Mapping[str, Any]) -> frozenset[str]:
    """The features a worker's heartbeat advertises; none for a heartbeat without a
    ``features`` list (a worker older than :data:`PROTOCOL_VERSION` 2)."""
    features = heartbeat.get("features")
    if not isinstance(features, list):
        return frozenset()
    return frozenset(name for name in features if isinstance(name, str))
