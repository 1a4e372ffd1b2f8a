"""Strict JSON: the one parser of JSON that comes from outside (request bodies, manifests).

:func:`loads` is :func:`json.loads` that also refuses what the standard library lets
through: a key twice in one object (the last would silently win) and ``NaN`` /
``Infinity`` (not JSON). Every refusal is a ``ValueError`` whose message says what
was wrong; callers turn it into their own error (a 400, an ``InvalidArchive``).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"it has the key {key!r} twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads(text: str) -> Any:
    """Parse ``text``; raises ValueError (or RecursionError for absurd nesting)."""
    return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
