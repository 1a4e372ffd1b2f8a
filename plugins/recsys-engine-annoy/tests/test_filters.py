"""Filters are applied before the top k is cut: k results whenever k publications pass."""

from __future__ import annotations

from collections import Counter

import pytest

from recsys.domain import Query
from recsys_engine_annoy import ranking


@pytest.fixture(params=["exact", "over-fetch"])
def path(request, monkeypatch) -> str:
    """Run each test through both ways of answering a filtered query."""
    if request.param == "over-fetch":  # never score all passing rows: search the index and over-fetch
        monkeypatch.setattr(ranking, "EXACT_FILTER_ROWS", 0)
        monkeypatch.setattr(ranking, "EXACT_FILTER_SHARE", 0.0)
    return request.param


def _label_far_from(engine, small_corpus, text: str) -> str:
    """A label that none of the unfiltered top 10 for ``text`` has."""
    near = {r.label for r in engine.recommend(Query(text=text, k=10))}
    counts = Counter(p.label for p in small_corpus)
    return next(label for label, _ in counts.most_common() if label not in near)


def test_a_label_absent_from_the_top_still_fills_k(engine, small_corpus, path):
    text = small_corpus[0].title
    label = _label_far_from(engine, small_corpus, text)
    recs = engine.recommend(Query(text=text, k=5, label=label))
    assert len(recs) == 5
    assert {r.label for r in recs} == {label}


def test_filtered_results_are_the_best_that_pass(engine, small_corpus, path):
    text = small_corpus[3].abstract
    label = _label_far_from(engine, small_corpus, text)
    everything = engine.recommend(Query(text=text, k=len(small_corpus) if len(small_corpus) <= 100 else 100))
    expected = [r.publication_id for r in everything if r.label == label][:4]
    got = [r.publication_id for r in engine.recommend(Query(text=text, k=4, label=label))]
    assert got == expected


def test_years_and_exclusions_combine(engine, small_corpus, path):
    years = sorted(p.year for p in small_corpus if p.year is not None)
    low, high = years[len(years) // 3], years[2 * len(years) // 3]
    own = small_corpus[10]
    first = engine.recommend(Query(publication_id=own.id, k=3, year_min=low, year_max=high))
    excluded = frozenset(r.publication_id for r in first)
    query = Query(publication_id=own.id, k=8, year_min=low, year_max=high, exclude_ids=excluded)
    recs = engine.recommend(query)
    passing = [p for p in small_corpus if query.accepts(p.id, p.label, p.year)]
    assert len(recs) == min(8, len(passing))
    assert all(low <= (r.year or 0) <= high and r.publication_id not in excluded | {own.id} for r in recs)


def test_a_filter_nothing_passes_gives_no_results(engine, small_corpus, path):
    assert engine.recommend(Query(text="Robots.", k=5, label="no-such-label")) == []
    assert engine.recommend(Query(text="Robots.", k=5, year_min=3000)) == []


def test_k_larger_than_what_passes_returns_all_that_pass(engine, small_corpus, path):
    label = small_corpus[0].label
    members = [p for p in small_corpus if p.label == label]
    recs = engine.recommend(Query(publication_id=members[0].id, k=100, label=label))
    assert sorted(r.publication_id for r in recs) == sorted(p.id for p in members[1:])
