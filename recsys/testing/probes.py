"""Queries the conformance suite asks, derived deterministically from the corpus."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from recsys.domain import Publication, Query
from recsys.engine import Engine
from recsys.testing.checks import sentence_text

__all__ = [
    "UNKNOWN_WORDS",
    "FilterCase",
    "FilterCases",
    "filter_cases",
    "label_precision_at",
    "probe_queries",
    "spread",
]

#: A text of words that no corpus holds.
UNKNOWN_WORDS = "Zqxvorp blarfenwix quoddlethrump. Vrillaxian snorfbeckel gwimmerdash."


def spread(items: Sequence[Publication], count: int) -> list[Publication]:
    """Up to ``count`` items evenly spaced over ``items`` (first one included), in order."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def _full_text(pub: Publication) -> str:
    return sentence_text([pub.title, pub.abstract])


def probe_queries(corpus: Sequence[Publication]) -> list[Query]:
    """A mix of queries whose answers engines must reproduce (after a reload, in another
    process, in threads): by text and by id, with and without filters, an unknown id
    and unknown words."""
    picks = spread(corpus, 8)
    labels = [p.label for p in corpus if p.label is not None]
    years = sorted(p.year for p in corpus if p.year is not None)
    queries = [Query(publication_id=p.id, k=5) for p in picks[:4]]
    queries += [
        Query(text=picks[4].title, k=5),
        Query(text=_full_text(picks[5]), k=10),
        Query(text=sentence_text(p.title for p in picks), k=7, exclude_ids=frozenset({picks[0].id, picks[1].id})),
        Query(text=UNKNOWN_WORDS, k=5),
        Query(publication_id="no-such-publication-id-0000", k=5),
    ]
    if labels:
        label = Counter(labels).most_common()[-1][0]
        queries.append(Query(publication_id=picks[6].id, k=5, label=label))
    if years:
        queries.append(Query(text=_full_text(picks[7]), k=5, year_min=years[len(years) // 2]))
    return queries


@dataclass(frozen=True)
class FilterCase:
    """A filtered query, the same text without filters, and how many results it must give."""

    query: Query
    text: str
    k: int


@dataclass(frozen=True)
class FilterCases:
    label: FilterCase
    years: FilterCase


def filter_cases(corpus: Sequence[Publication], k: int = 5) -> FilterCases:
    """Filtered queries whose unfiltered top-k is dominated by publications the filter
    removes, while at least ``k`` publications that pass it match some of the text.

    Raises ValueError when the corpus cannot make such cases (fewer than two labels
    with ``k`` publications, or fewer than ``k`` publications with a year).
    """
    by_label: dict[str, list[Publication]] = {}
    for pub in corpus:
        if pub.label is not None:
            by_label.setdefault(pub.label, []).append(pub)
    big = sorted((label for label, pubs in by_label.items() if len(pubs) >= k), key=lambda lb: -len(by_label[lb]))
    if len(big) < 2:
        raise ValueError(f"the corpus needs two labels with at least {k} publications each for the filter tests")
    crowd, wanted = by_label[big[0]], by_label[big[1]]
    text = sentence_text([_full_text(p) for p in crowd[:3]] + [p.title for p in spread(wanted, k)])
    label_case = FilterCase(Query(text=text, k=k, label=big[1]), text, k)

    years = sorted(p.year for p in corpus if p.year is not None)
    if len(years) < k:
        raise ValueError(f"the corpus needs at least {k} publications with a year for the filter tests")
    low, high = years[len(years) // 4], years[3 * len(years) // 4]
    inside = [p for p in corpus if p.year is not None and low <= p.year <= high]
    inside_ids = {p.id for p in inside}
    outside = [p for p in corpus if p.id not in inside_ids]
    wanted_k = min(k, len(inside))
    text = sentence_text([_full_text(p) for p in outside[:3]] + [p.title for p in spread(inside, wanted_k)])
    years_case = FilterCase(Query(text=text, k=wanted_k, year_min=low, year_max=high), text, wanted_k)
    return FilterCases(label_case, years_case)


def label_precision_at(engine: Engine, corpus: Sequence[Publication], *, k: int, limit: int) -> float:
    """Mean share of the top ``k`` by-id recommendations with the query's own label,
    over up to ``limit`` labelled publications (missing results count as misses)."""
    labelled = [p for p in corpus if p.label is not None]
    label_of = {p.id: p.label for p in corpus}
    shares = []
    for pub in spread(labelled, limit):
        recs = engine.recommend(Query(publication_id=pub.id, k=k))
        shares.append(sum(label_of.get(r.publication_id) == pub.label for r in recs) / k)
    return sum(shares) / len(shares) if shares else 0.0
