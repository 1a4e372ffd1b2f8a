"""Request validation: the body of ``POST /v1/recommendations`` (read by :mod:`recsys_api.body`).

``POST /v1/recommendations`` is validated with the JSON schema that ``/openapi.json``
shows (:data:`recsys_api.schemas.RECOMMENDATION_REQUEST`, the same object) by
``jsonschema``'s draft 4 validator, extended with OpenAPI 3.0's ``nullable``: draft 4's
``"integer"`` refuses ``10.0`` and ``true``, where draft 6 and later accept ``10.0``.
The limits in the schema come from :mod:`recsys.query_limits`, as do those of
:class:`recsys.domain.Query`.

Each rule fails with a 400 :class:`~recsys_api.errors.ApiError` whose description
names the field and the rule, and whose ``field`` says which one, e.g.::

    400 {"title": "Invalid request", "field": "k",
         "description": "'k' must be a whole number from 1 to 100, got 0"}

When several rules fail, the first in the schema's order of fields is reported.
:func:`problem` turns jsonschema's errors into these messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft4Validator, ValidationError, validators

from recsys.query_limits import MAX_QUERIES, MIN_QUERIES, NOT_BLANK, WORD
from recsys_api.errors import ApiError, http_error
from recsys_api.schemas import EXAMPLE, RECOMMENDATION_REQUEST

__all__ = [
    "RECOMMEND_FIELDS",
    "REQUEST_VALIDATOR",
    "OpenApi30Validator",
    "problem",
    "validate_batch",
    "validate_recommendation",
]

#: The fields of ``POST /v1/recommendations``, in the schema's order.
RECOMMEND_FIELDS = tuple(RECOMMENDATION_REQUEST["properties"])
#: String fields trimmed of surrounding whitespace before the schema applies.
_TRIMMED = tuple(name for name, rule in RECOMMENDATION_REQUEST["properties"].items() if rule["type"] == "string")


def _nullable_type(
    validator: Any, types: Any, instance: Any, schema: dict[str, Any]
) -> Iterable[ValidationError]:
    """Draft 4's ``type``, where OpenAPI 3.0's ``nullable: true`` also allows ``null``."""
    if instance is None and schema.get("nullable") is True:
        return
    yield from Draft4Validator.VALIDATORS["type"](validator, types, instance, schema)


#: OpenAPI 3.0's Schema Object: JSON Schema draft 4 (its type checker: ``10.0`` and
#: ``true`` are not integers) plus ``nullable``.
OpenApi30Validator = validators.extend(Draft4Validator, {"type": _nullable_type})

#: The validator of ``POST /v1/recommendations``; its ``schema`` is the one in /openapi.json.
REQUEST_VALIDATOR = OpenApi30Validator(RECOMMENDATION_REQUEST)


def _invalid(field: str | None, description: str) -> ApiError:
    extra = {"field": field} if field else None
    return http_error("bad_request", description, extra=extra)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: Which failure of a field is reported first: its type, then its size, then its form.
_KEYWORD_ORDER = ("type", "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum", "pattern", "items")


#: What a string field's ``pattern`` means, by pattern.
_PATTERN_RULES = {
    WORD: "the {field} has no words: '{field}' must contain a letter or a digit "
          "(NUL, zero-width and other control or format characters do not count)",
    NOT_BLANK: "'{field}' must not be blank",
}


def _order(error: ValidationError) -> tuple[int, int, int, int]:
    """Sort key: body type, unknown fields, text/publication_id, then the fields in schema order."""
    path = list(error.absolute_path)
    if not path:
        return ({"type": 0, "additionalProperties": 1}.get(str(error.validator), 2), 0, 0, 0)
    name = str(path[0])
    field = RECOMMEND_FIELDS.index(name) if name in RECOMMEND_FIELDS else len(RECOMMEND_FIELDS)
    keyword = str(error.validator)
    rank = _KEYWORD_ORDER.index(keyword) if keyword in _KEYWORD_ORDER else len(_KEYWORD_ORDER)
    item = path[1] if len(path) > 1 and isinstance(path[1], int) else -1
    return (3, field, item, rank)


def problem(error: ValidationError) -> tuple[str | None, str]:
    """The field and the message (field and rule) for one of the request schema's errors."""
    keyword, value, path = error.validator, error.instance, list(error.absolute_path)
    if not path:
        if keyword == "type":
            return None, f"the request body must be a JSON object, got {_kind(value)}"
        if keyword == "additionalProperties":
            unknown = sorted(str(key) for key in value if key not in RECOMMEND_FIELDS)
            return unknown[0], (
                f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(RECOMMEND_FIELDS)}"
            )
        return _one_of(RECOMMENDATION_REQUEST, value, "")
    field = str(path[0])
    rule = RECOMMENDATION_REQUEST["properties"][field]
    kind = rule["type"]
    if field in ("like", "unlike"):
        return field, _example_problem(field, rule, error)
    if kind == "integer":
        low, high = rule["minimum"], rule["maximum"]
        return field, f"'{field}' must be a whole number from {low} to {high}, got {_shown(value)}"
    if kind == "number" and "minimum" not in rule:
        return field, f"'{field}' must be a number, got {_shown(value)}"
    if kind == "number":
        low, high = rule["minimum"], rule["maximum"]
        return field, f"'{field}' must be a number from {low:g} to {high:g}, got {_shown(value)}"
    if kind == "boolean":
        return field, f"'{field}' must be true or false, got {_shown(value)}"
    if kind == "array":
        items = rule["items"]
        if len(path) > 1:
            return field, (
                f"'{field}[{path[1]}]' must be a string of {items['minLength']} to {items['maxLength']} characters"
            )
        if keyword == "maxItems":
            return field, f"'{field}' holds {len(value)} ids; at most {rule['maxItems']} are allowed"
        return field, f"'{field}' must be a list of publication ids, got {_kind(value)}"
    if keyword == "type":
        return field, f"'{field}' must be a string, got {_kind(value)}"
    if keyword == "pattern":
        return field, _PATTERN_RULES[rule["pattern"]].format(field=field)
    return field, (
        f"'{field}' must be {rule['minLength']} to {rule['maxLength']} characters after trimming whitespace, "
        f"got {len(value)}"
    )


def _one_of(schema: dict[str, Any], value: Any, prefix: str) -> tuple[str, str]:
    """The message of a broken "exactly one of" rule (``prefix``: where, e.g. ``like[2]``)."""
    names = [branch["required"][0] for branch in schema["oneOf"]]
    given = [name for name in names if isinstance(value, dict) and name in value]
    which = " and ".join(map(repr, given)) if given else "none of them"
    listed = ", ".join(map(repr, names[:-1])) + f" or {names[-1]!r}"
    where = f"'{prefix}' must hold" if prefix else "give"
    return (prefix.split("[")[0] if prefix else names[0]), f"{where} exactly one of {listed} (got {which})"


def _example_problem(field: str, rule: dict[str, Any], error: ValidationError) -> str:
    """The message for a broken rule of ``like`` / ``unlike`` or of one of their items."""
    keyword, value, path = error.validator, error.instance, list(error.absolute_path)
    if len(path) == 1:
        if keyword == "type":
            return f"'{field}' must be a list of {{\"text\"}} or {{\"publication_id\"}} objects, got {_kind(value)}"
        low = rule.get("minItems", 0)
        return f"'{field}' must hold {low} to {rule['maxItems']} items, got {len(value)}"
    where = f"{field}[{path[1]}]"
    if len(path) == 2:
        if keyword == "type":
            return f"'{where}' must be an object with a 'text' or a 'publication_id', got {_kind(value)}"
        if keyword == "additionalProperties":
            unknown = sorted(str(key) for key in value if key not in EXAMPLE["properties"])
            return f"'{where}' has unknown field(s) {', '.join(map(repr, unknown))}; allowed: 'text', 'publication_id'"
        return _one_of(EXAMPLE, value, where)[1]
    name = str(path[2])
    item = EXAMPLE["properties"][name]
    if keyword == "type":
        return f"'{where}.{name}' must be a string, got {_kind(value)}"
    if keyword == "pattern":
        return _PATTERN_RULES[item["pattern"]].format(field=f"{where}.{name}")
    return (f"'{where}.{name}' must be {item['minLength']} to {item['maxLength']} characters after trimming "
            f"whitespace, got {len(value)}")


def _trimmed(body: dict[str, Any]) -> dict[str, Any]:
    out = {key: value.strip() if key in _TRIMMED and isinstance(value, str) else value for key, value in body.items()}
    for key in ("like", "unlike"):
        items = out.get(key)
        if isinstance(items, list):
            out[key] = [
                {name: text.strip() if isinstance(text, str) else text for name, text in item.items()}
                if isinstance(item, dict) else item
                for item in items
            ]
    return out


def validate_recommendation(body: Any) -> dict[str, Any]:
    """The normalized request of ``POST /v1/recommendations`` (strings trimmed, ``k`` and
    ``strict`` filled in, null filters dropped); raises a 400 ApiError naming the field."""
    if isinstance(body, dict):
        body = _trimmed(body)
    first = min(REQUEST_VALIDATOR.iter_errors(body), key=_order, default=None)
    if first is not None:
        field, description = problem(first)
        raise _invalid(field, description)
    year_min, year_max = body.get("year_min"), body.get("year_max")
    if year_min is not None and year_max is not None and year_min > year_max:
        raise _invalid("year_min", f"'year_min' ({year_min}) must not be greater than 'year_max' ({year_max})")
    request: dict[str, Any] = {}
    for name, rule in RECOMMENDATION_REQUEST["properties"].items():
        value = body.get(name, rule.get("default"))
        if value is not None and value != []:
            request[name] = value
    return request


def _batch_item(body: Any) -> dict[str, Any]:
    try:
        return validate_recommendation(body)
    except ApiError as exc:
        error = {"code": "bad_request", "message": str(exc.description)}
        if exc.extra.get("field"):
            error["field"] = exc.extra["field"]
        return {"error": error}


def validate_batch(body: Any) -> list[dict[str, Any]]:
    """The items of ``POST /v1/recommendations/batch``: each query's normalized request, or
    ``{"error": {"code": "bad_request", "message", "field"}}`` for one that breaks a rule.
    A bad envelope (not an object, ``queries`` missing, not a list, empty or too long, other
    fields) is a 400 naming ``queries``."""
    if not isinstance(body, dict):
        raise _invalid(None, f"the request body must be a JSON object, got {_kind(body)}")
    unknown = sorted(key for key in body if key != "queries")
    if unknown:
        raise _invalid(unknown[0], f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: 'queries'")
    queries = body.get("queries")
    if not isinstance(queries, list):
        raise _invalid("queries", f"'queries' must be a list of {MIN_QUERIES} to {MAX_QUERIES} request bodies, "
                                  f"got {'nothing' if 'queries' not in body else _kind(queries)}")
    if not MIN_QUERIES <= len(queries) <= MAX_QUERIES:
        raise _invalid("queries", f"'queries' must hold {MIN_QUERIES} to {MAX_QUERIES} request bodies, "
                                  f"got {len(queries)}")
    return [_batch_item(query) for query in queries]
