"""Request validation: JSON bodies read within a size limit, and the recommendation body.

Each rule fails with a 4xx :class:`~recsys_api.errors.ApiError` whose description
names the field and the rule, and whose ``field`` says which one, e.g.::

    400 {"title": "Invalid request", "field": "k",
         "description": "'k' must be a whole number from 1 to 100, got 0"}

The rules of ``POST /v1/recommendations`` (the OpenAPI schema says the same):

* exactly one of ``text`` (1 to 50,000 characters after trimming whitespace) or
  ``publication_id`` (1 to 256 characters, not blank);
* ``k``: a whole number from 1 to 100 (default 10);
* ``exclude_ids``: up to 1,000 publication ids; ``label``: 1 to 256 characters;
  ``year_min``/``year_max``: whole numbers from 0 to 9999, ``year_min <= year_max``
  (``null`` means no filter);
* ``strict``: a boolean (default false): the worker must serve at least the API's
  current engine generation;
* any other field is refused.
"""

from __future__ import annotations

import json
from typing import Any

import falcon

from recsys.domain import MAX_K, MAX_TEXT_CHARS
from recsys_api.errors import ApiError

__all__ = [
    "MAX_EXCLUDE_IDS",
    "MAX_ID_CHARS",
    "MAX_LABEL_CHARS",
    "RECOMMEND_FIELDS",
    "read_json",
    "validate_recommendation",
]

MAX_ID_CHARS = 256
MAX_LABEL_CHARS = 256
MAX_EXCLUDE_IDS = 1000
MAX_YEAR = 9999
DEFAULT_K = 10

RECOMMEND_FIELDS = ("text", "publication_id", "k", "exclude_ids", "label", "year_min", "year_max", "strict")


def _invalid(field: str | None, description: str) -> ApiError:
    extra = {"field": field} if field else None
    return ApiError(400, "Invalid request", description, extra=extra)


def read_json(req: falcon.Request, max_bytes: int) -> Any:
    """The request's JSON body: 415 unless ``application/json``, 413 past ``max_bytes``
    (Content-Length checked first, then while reading), 400 when it does not parse."""
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != falcon.MEDIA_JSON:
        raise ApiError(
            415, "Unsupported media type",
            f"send the body as JSON with 'Content-Type: application/json' (got {req.content_type or 'none'!r})",
        )
    length = req.content_length
    if length is not None and length > max_bytes:
        raise _too_large(length, max_bytes)
    data = req.bounded_stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_large(None, max_bytes)
    if not data:
        raise _invalid(None, "the request body is empty: send a JSON object")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _invalid(None, f"the request body is not valid JSON: {exc}") from None


def _too_large(length: int | None, max_bytes: int) -> ApiError:
    got = f" ({length} bytes)" if length is not None else ""
    return ApiError(413, "Request body too large", f"the request body{got} is larger than {max_bytes} bytes")


def _string(body: dict[str, Any], field: str, max_chars: int) -> str | None:
    value = body.get(field)
    if value is None and field not in ("text", "publication_id"):
        return None
    if not isinstance(value, str):
        raise _invalid(field, f"'{field}' must be a string, got {_kind(value)}")
    stripped = value.strip()
    if not 1 <= len(stripped) <= max_chars:
        raise _invalid(
            field, f"'{field}' must be 1 to {max_chars} characters after trimming whitespace, got {len(stripped)}"
        )
    return stripped


def _whole(body: dict[str, Any], field: str, low: int, high: int, default: int | None) -> int | None:
    value = body.get(field)
    if value is None and (field not in body or default is None):
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 10.0 is a whole number in JSON
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(field, f"'{field}' must be a whole number from {low} to {high}, got {_shown(value)}")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _exclude_ids(body: dict[str, Any]) -> list[str] | None:
    value = body.get("exclude_ids")
    if value is None:
        return None
    if not isinstance(value, list):
        raise _invalid("exclude_ids", f"'exclude_ids' must be a list of publication ids, got {_kind(value)}")
    if len(value) > MAX_EXCLUDE_IDS:
        raise _invalid("exclude_ids", f"'exclude_ids' holds {len(value)} ids; at most {MAX_EXCLUDE_IDS} are allowed")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not 1 <= len(item) <= MAX_ID_CHARS:
            raise _invalid(
                "exclude_ids", f"'exclude_ids[{index}]' must be a string of 1 to {MAX_ID_CHARS} characters"
            )
    return list(value)


def validate_recommendation(body: Any) -> dict[str, Any]:
    """The normalized request of ``POST /v1/recommendations`` (text trimmed, ``k`` and
    ``strict`` filled in, null filters dropped); raises a 400 ApiError naming the field."""
    if not isinstance(body, dict):
        raise _invalid(None, f"the request body must be a JSON object, got {_kind(body)}")
    unknown = sorted(str(key) for key in body if key not in RECOMMEND_FIELDS)
    if unknown:
        raise _invalid(
            unknown[0], f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(RECOMMEND_FIELDS)}"
        )
    has_text, has_id = "text" in body, "publication_id" in body
    if has_text == has_id:
        which = "both" if has_text else "neither"
        raise _invalid("text", f"give exactly one of 'text' or 'publication_id' (got {which})")
    request: dict[str, Any] = {}
    if has_text:
        request["text"] = _string(body, "text", MAX_TEXT_CHARS)
    else:
        request["publication_id"] = _string(body, "publication_id", MAX_ID_CHARS)
    request["k"] = _whole(body, "k", 1, MAX_K, DEFAULT_K)
    exclude = _exclude_ids(body)
    if exclude:
        request["exclude_ids"] = exclude
    label = _string(body, "label", MAX_LABEL_CHARS)
    if label is not None:
        request["label"] = label
    year_min = _whole(body, "year_min", 0, MAX_YEAR, None)
    year_max = _whole(body, "year_max", 0, MAX_YEAR, None)
    if year_min is not None and year_max is not None and year_min > year_max:
        raise _invalid("year_min", f"'year_min' ({year_min}) must not be greater than 'year_max' ({year_max})")
    if year_min is not None:
        request["year_min"] = year_min
    if year_max is not None:
        request["year_max"] = year_max
    strict = body.get("strict", False)
    if not isinstance(strict, bool):
        raise _invalid("strict", f"'strict' must be true or false, got {_shown(strict)}")
    request["strict"] = strict
    return request
