"""JSON schemas of the API's bodies (OpenAPI 3.0 dialect), used by :mod:`recsys_api.openapi`.

:data:`RECOMMENDATION_REQUEST` is also the schema :mod:`recsys_api.validation` validates
``POST /v1/recommendations`` with: the same object, shown in ``/openapi.json`` as
``#/components/schemas/RecommendationRequest``. Its limits come from
:mod:`recsys.query_limits`, which :class:`recsys.domain.Query` checks too.

The dialect is OpenAPI 3.0's Schema Object: JSON Schema draft 4 keywords (where
``"integer"`` excludes ``10.0``) plus ``nullable``. String fields are trimmed of
surrounding whitespace before the schema applies; ``year_min <= year_max`` is the one
rule JSON Schema cannot state (its description says it; the validation checks it).
"""

from __future__ import annotations

from typing import Any

from recsys.query_limits import (
    DEFAULT_K,
    MAX_DIVERSITY,
    MAX_EXAMPLES,
    MAX_EXCLUDE_IDS,
    MAX_ID_CHARS,
    MAX_K,
    MAX_LABEL_CHARS,
    MAX_LEXICAL_WEIGHT,
    MAX_OFFSET,
    MAX_QUERIES,
    MAX_TEXT_CHARS,
    MAX_YEAR,
    MIN_DIVERSITY,
    MIN_K,
    MIN_LEXICAL_WEIGHT,
    MIN_LIKE,
    MIN_QUERIES,
    MIN_YEAR,
    NOT_BLANK,
    WORD,
)

__all__ = ["BATCH_REQUEST", "EXAMPLE", "RECOMMENDATION_REQUEST", "SCHEMAS"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": "string", "nullable": True}
_NULLABLE_INT = {"type": "integer", "nullable": True}

_YEAR = {"type": "integer", "minimum": MIN_YEAR, "maximum": MAX_YEAR, "nullable": True}

_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS, "pattern": WORD}
_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": NOT_BLANK}

#: One item of ``like`` / ``unlike``: a text or a stored publication (exactly one).
EXAMPLE: dict[str, Any] = {
    "type": "object",
    "description": "a text or a stored publication: exactly one of `text` and `publication_id` (the same rules "
                   "as the request's own)",
    "additionalProperties": False,
    "properties": {"text": dict(_TEXT), "publication_id": dict(_ID)},
    "oneOf": [{"required": ["text"]}, {"required": ["publication_id"]}],
}

RECOMMENDATION_REQUEST: dict[str, Any] = {
    "type": "object",
    "description": "Exactly one of `text`, `publication_id` or `like`; every other field is optional. "
                   "Unknown fields are refused. Strings are trimmed of surrounding whitespace before "
                   "their lengths are checked.",
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS, "pattern": WORD,
                 "description": f"the text to find publications for: 1 to {MAX_TEXT_CHARS} characters "
                                "after trimming whitespace, with a letter or a digit (NUL, zero-width and "
                                "other control or format characters do not count; the pattern is Python's "
                                "Unicode-aware `\\w` without `_`)"},
        "publication_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": NOT_BLANK,
                           "description": "find publications similar to this stored one (never returned itself)"},
        "like": {"type": "array", "minItems": MIN_LIKE, "maxItems": MAX_EXAMPLES, "items": EXAMPLE,
                 "description": f"more like these: {MIN_LIKE} to {MAX_EXAMPLES} texts or stored publications, "
                                "instead of `text` / `publication_id`; their vectors are averaged (docs/api.md, "
                                "*like and unlike*); the liked publications are never returned"},
        "unlike": {"type": "array", "maxItems": MAX_EXAMPLES, "items": EXAMPLE, "nullable": True,
                   "description": f"less like these: 0 to {MAX_EXAMPLES} texts or stored publications (with "
                                  "`text`, `publication_id` or `like`); never returned either"},
        "k": {"type": "integer", "minimum": MIN_K, "maximum": MAX_K, "default": DEFAULT_K,
              "description": "how many recommendations (a whole number: `10.0` is refused)"},
        "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "nullable": True,
                   "description": "skip this many results of the ranking: `offset: 5, k: 5` gives ranks 6 to 10"},
        "exclude_ids": {"type": "array", "maxItems": MAX_EXCLUDE_IDS, "nullable": True,
                        "items": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
                        "description": "publication ids never to return"},
        "label": {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS, "pattern": NOT_BLANK,
                  "nullable": True, "description": "only publications with this label"},
        "year_min": {**_YEAR, "description": "only publications from this year on (inclusive)"},
        "year_max": {**_YEAR, "description": "only publications up to this year (inclusive); >= year_min"},
        "min_score": {"type": "number", "nullable": True,
                      "description": "drop results scoring below this (`score`: for the default engine the fused "
                                     "0-1 score, for the lexical engine the TF-IDF cosine)"},
        "diversity": {"type": "number", "minimum": MIN_DIVERSITY, "maximum": MAX_DIVERSITY, "nullable": True,
                      "description": "0 to 1: the weight of novelty in maximal marginal relevance over "
                                     "max(3 (offset + k), 50) candidates; 0 or unset: the plain ranking"},
        "lexical_weight": {"type": "number", "minimum": MIN_LEXICAL_WEIGHT, "maximum": MAX_LEXICAL_WEIGHT,
                           "nullable": True,
                           "description": "the share of the lexical signal in the fused score of an engine that "
                                          "has one (the default engine): 0 = dense similarity only, 1 = lexical "
                                          "only; unset: the engine's setting. Engines without a lexical signal "
                                          "ignore it"},
        "strict": {"type": "boolean", "default": False,
                   "description": "the worker must serve at least the API's current engine generation "
                                  "(it fetches it first if needed)"},
    },
    "oneOf": [{"required": ["text"]}, {"required": ["publication_id"]}, {"required": ["like"]}],
}

#: ``POST /v1/recommendations/batch``: the envelope. Each query is validated on its own
#: (``RECOMMENDATION_REQUEST``): a bad one gets its own error item, not a 400.
BATCH_REQUEST: dict[str, Any] = {
    "type": "object",
    "description": f"{MIN_QUERIES} to {MAX_QUERIES} queries, each a `RecommendationRequest` body, answered in order "
                   "from one task. A query that breaks a rule gets its own error item in the 200 answer.",
    "additionalProperties": False,
    "required": ["queries"],
    "properties": {
        "queries": {"type": "array", "minItems": MIN_QUERIES, "maxItems": MAX_QUERIES,
                    "items": {"description": "a `RecommendationRequest` body (`#/components/schemas/"
                                             "RecommendationRequest`), checked on its own: one that breaks its "
                                             "rules gets an error item, not a 400"}},
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["title", "description"],
        "properties": {
            "title": _STRING,
            "description": {"type": "string", "description": "what failed and what to do"},
            "code": {"type": "string", "description": "a stable error code, when there is one"},
            "field": {"type": "string", "description": "the request field at fault (400)"},
        },
    },
    "TaskTimeout": {
        "allOf": [_ref("Error"), {
            "type": "object",
            "description": "`task_id` and `status_url` are there when the API's own wait ran out (the task may "
                           "still finish: poll it); a worker that timed out itself answers a plain error",
            "properties": {"task_id": _STRING, "status_url": _STRING},
        }],
    },
    "Unavailable": {
        "allOf": [_ref("Error"), {
            "type": "object",
            "description": "`feature_unavailable`: `features` the request uses and the live worker `pools` (of an "
                           "older version) lacking them; `no_engine` while the first build runs: that build's "
                           "`task_id` and `status_url`",
            "properties": {
                "features": {"type": "array", "items": _STRING},
                "pools": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"host": _STRING, "recsys_version": _NULLABLE_STRING, "protocol": {"type": "integer"},
                                   "workers": {"type": "integer"}, "lacking": {"type": "array", "items": _STRING}},
                }},
                "task_id": _STRING, "status_url": _STRING,
            },
        }],
    },
    "NotReady": {
        "allOf": [_ref("Error"), {
            "type": "object", "required": ["checks"],
            "properties": {"checks": {"type": "object", "additionalProperties": _ref("Check")}},
        }],
    },
    "RecommendationRequest": RECOMMENDATION_REQUEST,
    "Example": EXAMPLE,
    "BatchRequest": BATCH_REQUEST,
    "BatchResult": {
        "type": "object",
        "required": ["engine", "results"],
        "properties": {
            "engine": {
                "type": "object", "required": ["name", "version"],
                "properties": {"name": _STRING, "version": _STRING, "generation": _NULLABLE_INT},
            },
            "results": {"type": "array", "description": "one per query, in order: its recommendations, or its error",
                        "items": {"type": "object", "properties": {
                            "recommendations": {"type": "array", "items": _ref("Recommendation")},
                            "error": _ref("BatchError"),
                        }}},
        },
    },
    "BatchError": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "bad_request (with `field`), unknown_publication, ..."},
            "message": _STRING,
            "field": {"type": "string", "description": "the field at fault (bad_request)"},
        },
    },
    "Evidence": {
        "type": "object",
        "required": ["query_sentence", "sentence", "score"],
        "properties": {"query_sentence": _STRING, "sentence": _STRING, "score": {"type": "number"},
                       "terms": {"type": "array", "items": _STRING}},
    },
    "Recommendation": {
        "type": "object",
        "required": ["publication_id", "title", "score", "evidence"],
        "properties": {
            "publication_id": _STRING, "title": _STRING, "score": {"type": "number"},
            "label": _NULLABLE_STRING, "year": _NULLABLE_INT,
            "evidence": {"type": "array", "items": _ref("Evidence")},
        },
    },
    "RecommendationResult": {
        "type": "object",
        "required": ["engine", "recommendations"],
        "properties": {
            "engine": {
                "type": "object", "required": ["name", "version"],
                "properties": {"name": _STRING, "version": _STRING, "generation": _NULLABLE_INT},
            },
            "recommendations": {"type": "array", "items": _ref("Recommendation")},
        },
    },
    "TaskAccepted": {
        "type": "object",
        "required": ["task_id", "status_url"],
        "properties": {"task_id": _STRING, "status_url": {"type": "string", "example": "/v1/tasks/<task_id>"}},
    },
    "TaskError": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string",
                     "description": "no_engine, unknown_publication, bad_request, internal, ..."},
            "message": _STRING,
        },
    },
    "TaskStatus": {
        "type": "object",
        "required": ["task_id", "status"],
        "properties": {
            "task_id": _STRING,
            "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
            "result": {"description": "the task's result (status succeeded), e.g. a RecommendationResult"},
            "error": _ref("TaskError"),
            "progress": _ref("Progress"),
        },
    },
    "UploadConflict": {
        "allOf": [_ref("Error"), {
            "type": "object",
            "description": "`missing` is there with `code: missing_files`: the files a thin archive left out that "
                           "the API does not hold. `metric`, `new`, `current` and `tolerance` are there with "
                           "`code: quality_gate`: the metric that got worse, and by how much.",
            "properties": {
                "missing": {"type": "array", "items": _ref("FileEntry")},
                "metric": {"type": "string", "example": "text_p@10"},
                "new": {"type": "number"}, "current": {"type": "number"}, "tolerance": {"type": "number"},
            },
        }],
    },
    "FileEntry": {
        "type": "object", "required": ["path", "size", "sha256"],
        "properties": {"path": _STRING, "size": {"type": "integer"}, "sha256": _STRING},
    },
    "EngineManifest": {
        "type": "object",
        "required": ["engine", "version", "created_at", "generation", "manifest_sha256", "bytes", "sha256", "size"],
        "properties": {
            "format": {"type": "integer"},
            "engine": _STRING,
            "engine_version": _NULLABLE_STRING,
            "recsys_version": _NULLABLE_STRING,
            "version": {"type": "string", "example": "20261128T211800123456Z"},
            "created_at": {"type": "string", "example": "2026-11-28T21:18:00.123456Z"},
            "publications": {"type": "integer"},
            "sentences": {"type": "integer"},
            "model": _NULLABLE_STRING,
            "dimension": _NULLABLE_INT,
            "extra": {"type": "object"},
            "files": {"type": "array", "items": _ref("FileEntry"),
                      "description": "every file, each downloadable from /v1/engine/files/{sha256}"},
            "generation": {"type": "integer", "description": "increases with every change of the current engine"},
            "manifest_sha256": {"type": "string",
                                "description": "the version's identity: sha256 of its manifest.json's exact bytes "
                                               "(served by /v1/engine/files/{manifest_sha256})"},
            "bytes": {"type": "integer", "description": "the engine's bytes: its files and its manifest"},
            "sha256": {"type": "string", "nullable": True,
                       "description": "of the full archive file (GET /v1/engine/archive), null until it has been "
                                      "assembled (by its first download)"},
            "size": {"type": "integer", "nullable": True,
                     "description": "full archive size in bytes, null until it has been assembled"},
            "installed_at": _STRING,
            "example": {
                "type": "object",
                "description": "an example query from the engine's corpus (the request examples of /docs use it); "
                               "absent for an archive without one",
                "properties": {"text": _STRING, "publication_id": _STRING},
            },
            "quality": {
                "type": "object",
                "description": "the build's comparison with the engine in service then (absent for a first engine, "
                               "a change of plugin, or a corpus without labels): `against` (that version), "
                               "`metrics` (`{name: {\"new\", \"current\"}}`: same-label p@10 of by-id and of "
                               "text queries), `queries`",
                "properties": {"against": _STRING, "metrics": {"type": "object"}, "queries": {"type": "object"}},
            },
            "quality_gate": {
                "type": "object", "required": ["outcome"],
                "description": "what the quality gate made of this version when it became current (absent for "
                               "versions installed before the gate existed)",
                "properties": {
                    "outcome": {"type": "string", "enum": ["passed", "forced", "not_applied"]},
                    "reason": {"type": "string", "description": "why it was not applied"},
                    "against": _STRING, "tolerance": {"type": "number"},
                    "metric": {"type": "string", "description": "forced: the metric worse than the tolerance"},
                    "new": {"type": "number"}, "current": {"type": "number"},
                },
            },
        },
    },
    "Worker": {
        "type": "object",
        "required": ["host", "pid"],
        "properties": {
            "host": _NULLABLE_STRING, "pid": _NULLABLE_INT, "generation": _NULLABLE_INT,
            "version": _NULLABLE_STRING, "queues": {"type": "array", "items": _STRING, "nullable": True},
            "seen_at": _NULLABLE_STRING,
            "protocol": {"type": "integer", "description": "the wire contract's version it speaks (1: an older "
                                                            "worker that does not say)"},
            "features": {"type": "array", "items": _STRING,
                         "description": "the request features it supports (none for an older worker)"},
            "recsys_version": _NULLABLE_STRING,
        },
    },
    "Rollout": {
        "type": "object",
        "required": ["host", "state"],
        "description": "a worker machine's (an engine store's) last engine rollout, as its downloading process "
                       "reported it (kept an hour)",
        "properties": {
            "host": _NULLABLE_STRING, "pid": _NULLABLE_INT, "generation": _NULLABLE_INT,
            "version": _NULLABLE_STRING, "manifest_sha256": _NULLABLE_STRING,
            "state": {"type": "string", "nullable": True, "description": "`fetching`, then `done` or `failed`"},
            "files_needed": _NULLABLE_INT, "files_fetched": _NULLABLE_INT,
            "bytes_needed": {"type": "integer", "nullable": True, "description": "bytes of the files it lacked"},
            "bytes_fetched": _NULLABLE_INT,
            "bytes_reused": {"type": "integer", "nullable": True,
                             "description": "bytes of the version it already held"},
            "started_at": _NULLABLE_STRING, "updated_at": _NULLABLE_STRING,
            "seconds": {"type": "number", "nullable": True}, "error": _NULLABLE_STRING,
            "data_dir": {"type": "string", "nullable": True,
                         "description": "the machine's engine store (two pools of one host are two machines)"},
        },
    },
    "Workers": {
        "type": "object",
        "required": ["generation", "version", "converged", "workers", "rollouts"],
        "properties": {
            "generation": _NULLABLE_INT,
            "version": _NULLABLE_STRING,
            "converged": {"type": "boolean",
                          "description": "an engine exists and every live worker serving requests has it"},
            "workers": {"type": "array", "items": _ref("Worker")},
            "rollouts": {"type": "array", "items": _ref("Rollout"),
                         "description": "one per worker machine, by host and data dir"},
        },
    },
    "Engines": {
        "type": "object",
        "required": ["default", "engines"],
        "properties": {
            "default": {"type": "string", "description": "RECSYS_ENGINE: the engine builds use"},
            "engines": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "status"],
                "properties": {
                    "name": _STRING, "entry_point": _STRING, "distribution": _NULLABLE_STRING,
                    "version": _NULLABLE_STRING,
                    "status": {"type": "string", "enum": ["loaded", "not loaded", "broken"]},
                    "error": _NULLABLE_STRING,
                },
            }},
        },
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}},
    "Check": {
        "type": "object", "required": ["ok"],
        "properties": {"ok": {"type": "boolean"}, "error": _STRING},
    },
    "Ready": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready"]},
            "checks": {"type": "object", "additionalProperties": _ref("Check")},
        },
    },
}
