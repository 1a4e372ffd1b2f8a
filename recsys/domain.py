"""Domain types: Publication, Query, Recommendation and its Evidence.

They are frozen dataclasses with ``to_dict``/``from_dict`` for the JSON shapes
used in sources, task messages and results (see docs/ARCHITECTURE "Messages").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from recsys.errors import InvalidQuery, InvalidRecord
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
    MAX_TEXT_CHARS,
    MAX_YEAR,
    MIN_DIVERSITY,
    MIN_K,
    MIN_LEXICAL_WEIGHT,
    MIN_YEAR,
    has_words,
)

__all__ = [
    "MAX_K",
    "MAX_TEXT_CHARS",
    "Evidence",
    "Example",
    "Publication",
    "Query",
    "Recommendation",
]


def _opt_str(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int):
        raise InvalidRecord(f"{key!r} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class Publication:
    """A stored publication. ``id`` and ``title`` are required, and some body text:
    an ``abstract`` or a full ``text``."""

    id: str
    title: str
    abstract: str = ""
    text: str | None = None
    label: str | None = None
    year: int | None = None
    authors: tuple[str, ...] = ()
    url: str | None = None

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Publication:
        """Build from a source record; raises InvalidRecord saying what is wrong.

        Accepts ``full_text`` as an alias of ``text``, and an ``authors`` list or
        a single string separated by commas or semicolons.
        """
        if not isinstance(record, Mapping):
            raise InvalidRecord(f"a record must be a JSON object, got {type(record).__name__}")
        pub_id = _opt_str(record, "id")
        if pub_id is None:
            raise InvalidRecord("missing 'id'")
        if len(pub_id) > 256:
            raise InvalidRecord("'id' is longer than 256 characters")
        title = _opt_str(record, "title")
        if title is None:
            raise InvalidRecord(f"publication {pub_id!r} has no 'title'")
        abstract = _opt_str(record, "abstract") or ""
        text = _opt_str(record, "text") or _opt_str(record, "full_text")
        if not abstract and not text:
            raise InvalidRecord(f"publication {pub_id!r} has neither 'abstract' nor 'text'")
        year_raw = record.get("year")
        year: int | None
        if year_raw is None or year_raw == "":
            year = None
        else:
            try:
                year = int(year_raw)
            except (TypeError, ValueError):
                raise InvalidRecord(f"publication {pub_id!r} has a non-numeric 'year' {year_raw!r}") from None
            if not 0 < year < 10_000:
                raise InvalidRecord(f"publication {pub_id!r} has an impossible 'year' {year}")
        authors_raw = record.get("authors") or ()
        if isinstance(authors_raw, str):
            authors_raw = [a for a in authors_raw.replace(";", ",").split(",")]
        if not isinstance(authors_raw, Iterable):
            raise InvalidRecord(f"publication {pub_id!r} has 'authors' that is not a list")
        authors = tuple(str(a).strip() for a in authors_raw if str(a).strip())
        return cls(
            id=pub_id,
            title=title,
            abstract=abstract,
            text=text,
            label=_opt_str(record, "label"),
            year=year,
            authors=authors,
            url=_opt_str(record, "url"),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "title": self.title, "abstract": self.abstract}
        if self.text is not None:
            data["text"] = self.text
        data.update(label=self.label, year=self.year, authors=list(self.authors), url=self.url)
        return data

    @property
    def body(self) -> str:
        """Every text of the publication that engines index: title, abstract, full text."""
        return "\n\n".join(part for part in (self.title, self.abstract, self.text or "") if part)


def _query_text(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        raise InvalidQuery("'text' is empty")
    if len(stripped) > MAX_TEXT_CHARS:
        raise InvalidQuery(f"'text' is longer than {MAX_TEXT_CHARS} characters")
    if not has_words(stripped):
        raise InvalidQuery("the text has no words: 'text' must contain a letter or a digit")
    return stripped


def _check_number(name: str, value: object, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or (
        low is not None and value < low) or (high is not None and value > high):
        rule = f"a number from {low:g} to {high:g}" if low is not None and high is not None else "a number"
        raise InvalidQuery(f"'{name}' must be {rule}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Example:
    """One item of a query's ``like`` or ``unlike``: a ``text`` or a stored ``publication_id``."""

    text: str | None = None
    publication_id: str | None = None

    def check(self, name: str) -> Example:
        """This example, trimmed (raises InvalidQuery naming ``name``, e.g. ``like[2]``)."""
        if (self.text is None) == (self.publication_id is None):
            raise InvalidQuery(f"'{name}' must hold exactly one of 'text' or 'publication_id'")
        if self.text is not None:
            if not isinstance(self.text, str):
                raise InvalidQuery(f"'{name}.text' must be a string")
            try:
                return Example(text=_query_text(self.text))
            except InvalidQuery as exc:
                raise InvalidQuery(exc.message.replace("'text'", f"'{name}.text'")) from None
        pid = self.publication_id
        if not isinstance(pid, str) or not pid.strip() or len(pid.strip()) > MAX_ID_CHARS:
            raise InvalidQuery(f"'{name}.publication_id' must be 1 to {MAX_ID_CHARS} characters, not blank")
        return Example(publication_id=pid.strip())

    @classmethod
    def from_dict(cls, data: Any, name: str) -> Example:
        if isinstance(data, Example):
            return data.check(name)
        if not isinstance(data, Mapping) or set(data) - {"text", "publication_id"}:
            raise InvalidQuery(f"'{name}' must be an object with a 'text' or a 'publication_id'")
        return cls(text=data.get("text"), publication_id=data.get("publication_id")).check(name)

    def to_dict(self) -> dict[str, str]:
        return {"text": self.text} if self.text is not None else {"publication_id": str(self.publication_id)}


def _examples(name: str, items: object, least: int) -> tuple[Example, ...]:
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise InvalidQuery(f"'{name}' must be a list of {{'text'}} or {{'publication_id'}} objects")
    examples = tuple(Example.from_dict(item, f"{name}[{i}]") for i, item in enumerate(items))
    if not least <= len(examples) <= MAX_EXAMPLES:
        raise InvalidQuery(f"'{name}' must hold {least} to {MAX_EXAMPLES} items, got {len(examples)}")
    return examples


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _check_year(name: str, year: object) -> None:
    if year is not None and (isinstance(year, bool) or not isinstance(year, int) or not MIN_YEAR <= year <= MAX_YEAR):
        raise InvalidQuery(f"'{name}' must be a whole number from {MIN_YEAR} to {MAX_YEAR}")


@dataclass(frozen=True)
class Query:
    """What to recommend for: a ``text``, a stored ``publication_id``, or ``like`` examples (exactly one).

    ``like`` (1 to 20 :class:`Example`) asks for publications like all of them, ``unlike``
    (0 to 20) for ones unlike these (see docs/api.md, *like and unlike*); the publications
    they name are never returned. ``min_score`` drops results scoring below it;
    ``diversity`` (0 to 1) reorders an over-fetched candidate set by maximal marginal
    relevance (0: the plain ranking); ``offset`` skips that many results of the ranking
    (``offset=5, k=5``: ranks 6 to 10). Engines answer them with :mod:`recsys.refine`.

    Filters: ``exclude_ids`` are never returned; ``label`` keeps only that label;
    ``year_min``/``year_max`` keep publications whose year lies in the closed range
    (a publication without a year never matches a year filter). Engines over-fetch so
    that ``k`` results come back when at least ``k`` publications pass the filters.
    A by-id query never returns the publication itself.
    """

    text: str | None = None
    publication_id: str | None = None
    k: int = DEFAULT_K
    exclude_ids: frozenset[str] = field(default_factory=frozenset)
    label: str | None = None
    year_min: int | None = None
    year_max: int | None = None
    #: The share of the lexical signal in a hybrid engine's fused score, from 0 (dense
    #: only) to 1 (lexical only); None: the engine's own setting. Engines without a
    #: lexical signal ignore it.
    lexical_weight: float | None = None
    like: tuple[Example, ...] = ()
    unlike: tuple[Example, ...] = ()
    diversity: float = 0.0
    min_score: float | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        # The limits are those of the API's request schema (recsys.query_limits).
        self._check_examples()
        if self.text is not None:
            object.__setattr__(self, "text", _query_text(self.text))
        if self.publication_id is not None:
            if not self.publication_id.strip():
                raise InvalidQuery("'publication_id' is empty")
            if len(self.publication_id) > MAX_ID_CHARS:
                raise InvalidQuery(f"'publication_id' is longer than {MAX_ID_CHARS} characters")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not MIN_K <= self.k <= MAX_K:
            raise InvalidQuery(f"'k' must be a whole number from {MIN_K} to {MAX_K}")
        if not isinstance(self.exclude_ids, frozenset):
            object.__setattr__(self, "exclude_ids", frozenset(self.exclude_ids))
        if len(self.exclude_ids) > MAX_EXCLUDE_IDS:
            raise InvalidQuery(
                f"'exclude_ids' holds {len(self.exclude_ids)} ids; at most {MAX_EXCLUDE_IDS} are allowed"
            )
        if self.label is not None and not 1 <= len(self.label) <= MAX_LABEL_CHARS:
            raise InvalidQuery(f"'label' must be 1 to {MAX_LABEL_CHARS} characters")
        _check_year("year_min", self.year_min)
        _check_year("year_max", self.year_max)
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            raise InvalidQuery("'year_min' is greater than 'year_max'")
        weight = self.lexical_weight
        if weight is not None:
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                MIN_LEXICAL_WEIGHT <= weight <= MAX_LEXICAL_WEIGHT
            ):
                raise InvalidQuery(
                    f"'lexical_weight' must be a number from {MIN_LEXICAL_WEIGHT:g} to {MAX_LEXICAL_WEIGHT:g}"
                )
            object.__setattr__(self, "lexical_weight", float(weight))
        self._check_refinements()

    def _check_examples(self) -> None:
        if not isinstance(self.like, tuple) or self.like:
            object.__setattr__(self, "like", _examples("like", self.like, 1))
        if sum((self.text is not None, self.publication_id is not None, bool(self.like))) != 1:
            raise InvalidQuery("give exactly one of 'text', 'publication_id' or 'like'")
        if not isinstance(self.unlike, tuple) or self.unlike:
            object.__setattr__(self, "unlike", _examples("unlike", self.unlike, 0))

    def _check_refinements(self) -> None:
        object.__setattr__(self, "diversity", _check_number("diversity", self.diversity, MIN_DIVERSITY,
                                                            MAX_DIVERSITY))
        if self.min_score is not None:
            object.__setattr__(self, "min_score", _check_number("min_score", self.min_score))
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or not 0 <= self.offset <= MAX_OFFSET:
            raise InvalidQuery(f"'offset' must be a whole number from 0 to {MAX_OFFSET}")

    @property
    def is_plain(self) -> bool:
        """A query without like/unlike, diversity, min_score or offset: a plain ranking."""
        return not self.like and not self.unlike and self.diversity == 0 and self.min_score is None and (
            self.offset == 0)

    @property
    def example_ids(self) -> frozenset[str]:
        """The publications ``like`` and ``unlike`` name: never returned."""
        return frozenset(e.publication_id for e in (*self.like, *self.unlike) if e.publication_id is not None)

    @property
    def hidden_ids(self) -> frozenset[str]:
        """Every id a result may not have but the query's own: ``exclude_ids`` and :attr:`example_ids`."""
        examples = self.example_ids
        return self.exclude_ids | examples if examples else self.exclude_ids

    def plain(self, **changes: Any) -> Query:
        """This query's filters (example ids excluded too) without the extensions, with ``changes``."""
        fields: dict[str, Any] = {
            "text": self.text, "publication_id": self.publication_id, "k": self.k,
            "exclude_ids": self.hidden_ids, "label": self.label, "year_min": self.year_min,
            "year_max": self.year_max, "lexical_weight": self.lexical_weight,
        }
        fields.update(changes)
        return Query(**fields)

    @property
    def has_filters(self) -> bool:
        return bool(self.hidden_ids) or self.label is not None or self.year_min is not None or (
            self.year_max is not None
        )

    def accepts(self, publication_id: str, label: str | None, year: int | None) -> bool:
        """Whether a publication passes this query's filters (the query's own id excluded)."""
        if publication_id == self.publication_id or publication_id in self.hidden_ids:
            return False
        if self.label is not None and label != self.label:
            return False
        if self.year_min is not None and (year is None or year < self.year_min):
            return False
        if self.year_max is not None and (year is None or year > self.year_max):
            return False
        return True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Query:
        """Build from the API's validated request body (raises InvalidQuery)."""
        try:
            return cls(
                text=data.get("text"),
                publication_id=data.get("publication_id"),
                k=data.get("k", DEFAULT_K),
                exclude_ids=frozenset(data.get("exclude_ids") or ()),
                label=data.get("label"),
                year_min=data.get("year_min"),
                year_max=data.get("year_max"),
                lexical_weight=data.get("lexical_weight"),
                like=_examples("like", data.get("like") or (), 0),
                unlike=_examples("unlike", data.get("unlike") or (), 0),
                diversity=_or(data.get("diversity"), 0.0),
                min_score=data.get("min_score"),
                offset=_or(data.get("offset"), 0),
            )
        except TypeError as exc:
            raise InvalidQuery(f"malformed query: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"k": self.k}
        if self.text is not None:
            data["text"] = self.text
        if self.publication_id is not None:
            data["publication_id"] = self.publication_id
        if self.exclude_ids:
            data["exclude_ids"] = sorted(self.exclude_ids)
        for key in ("label", "year_min", "year_max", "lexical_weight", "min_score"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.like:
            data["like"] = [e.to_dict() for e in self.like]
        if self.unlike:
            data["unlike"] = [e.to_dict() for e in self.unlike]
        if self.diversity:
            data["diversity"] = self.diversity
        if self.offset:
            data["offset"] = self.offset
        return data


@dataclass(frozen=True)
class Evidence:
    """One query sentence, the stored sentence it matched, and their similarity.

    ``terms``: the index terms the two share, where an engine's lexical signal carried
    the result (a hybrid engine; lowercase, plurals folded); empty otherwise, and then
    left out of :meth:`to_dict`."""

    query_sentence: str
    sentence: str
    score: float
    terms: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"query_sentence": self.query_sentence, "sentence": self.sentence,
                               "score": round(self.score, 6)}
        if self.terms:
            out["terms"] = list(self.terms)
        return out


@dataclass(frozen=True)
class Recommendation:
    """A recommended publication with its score (higher is better) and evidence."""

    publication_id: str
    title: str
    score: float
    evidence: tuple[Evidence, ...] = ()
    label: str | None = None
    year: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "publication_id": self.publication_id,
            "title": self.title,
            "score": round(self.score, 6),
            "label": self.label,
            "year": self.year,
            "evidence": [e.to_dict() for e in self.evidence],
        }
