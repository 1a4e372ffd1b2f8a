"""The limits of a recommendation query, as plain data: one definition for the API and the domain.

The API's request schema (``recsys_api.schemas``, shown in ``/openapi.json`` and used
to validate ``POST /v1/recommendations``) is written with these values, and
:class:`recsys.domain.Query` checks the same ones, so a query the API accepts is one
the domain accepts. Lengths count characters after trimming surrounding whitespace.
"""

from __future__ import annotations

import re

__all__ = [
    "DEFAULT_K",
    "MAX_DIVERSITY",
    "MAX_EXAMPLES",
    "MAX_EXCLUDE_IDS",
    "MAX_LEXICAL_WEIGHT",
    "MAX_ID_CHARS",
    "MAX_K",
    "MAX_LABEL_CHARS",
    "MAX_OFFSET",
    "MAX_QUERIES",
    "MAX_TEXT_CHARS",
    "MAX_YEAR",
    "MIN_DIVERSITY",
    "MIN_K",
    "MIN_LIKE",
    "MIN_LEXICAL_WEIGHT",
    "MIN_QUERIES",
    "MIN_YEAR",
    "NOT_BLANK",
    "WORD",
    "has_words",
]

#: Fewest and most recommendations one query may ask for, and the default.
MIN_K = 1
MAX_K = 100
DEFAULT_K = 10
#: Longest query text, in characters after trimming.
MAX_TEXT_CHARS = 50_000
#: Longest publication id (a query's ``publication_id`` and each of its ``exclude_ids``).
MAX_ID_CHARS = 256
#: Longest label filter.
MAX_LABEL_CHARS = 256
#: Most ids in ``exclude_ids``.
MAX_EXCLUDE_IDS = 1000
#: The range of ``lexical_weight``: the share of the lexical signal in an engine's fused score.
MIN_LEXICAL_WEIGHT = 0.0
MAX_LEXICAL_WEIGHT = 1.0
#: Most examples in ``like`` (at least one when given) and in ``unlike``.
MIN_LIKE = 1
MAX_EXAMPLES = 20
#: The range of ``diversity``: the weight of novelty in maximal marginal relevance (0: the plain ranking).
MIN_DIVERSITY = 0.0
MAX_DIVERSITY = 1.0
#: Most results skipped with ``offset`` (``offset: 5, k: 5`` gives ranks 6 to 10).
MAX_OFFSET = 1000
#: Fewest and most queries in one ``POST /v1/recommendations/batch``.
MIN_QUERIES = 1
MAX_QUERIES = 100
#: The year filters' range (inclusive).
MIN_YEAR = 0
MAX_YEAR = 9999

#: Ids and labels must hold some character that is not whitespace.
NOT_BLANK = r"\S"
#: A query text must hold a letter or a digit: Python's Unicode-aware ``\w`` less the
#: underscore. NUL, zero-width and other control or format characters, and
#: punctuation alone, are no words.
WORD = r"[^\W_]"

_WORD = re.compile(WORD)


def has_words(text: str) -> bool:
    """Whether ``text`` holds at least one letter or digit (:data:`WORD`)."""
    return _WORD.search(text) is not None
