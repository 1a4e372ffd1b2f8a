"""recsys.refine: the page of a ranking (min_score, diversity by MMR, offset) and the generic answer."""

from __future__ import annotations

import numpy as np

from recsys import refine
from recsys.domain import Example, Query, Recommendation


def test_pool_over_fetches_only_for_diversity():
    assert refine.pool(Query(text="t", k=5, offset=5)) == 10
    assert refine.pool(Query(text="t", k=5, diversity=0.5)) == refine.MIN_POOL
    assert refine.pool(Query(text="t", k=100, offset=100, diversity=0.5)) == 600


def test_mmr_with_no_diversity_keeps_the_order_and_with_some_skips_near_duplicates():
    scores = np.array([0.9, 0.89, 0.5])
    similarity = np.array([[1.0, 0.99, 0.0], [0.99, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert refine.mmr(scores, similarity, 3, 0.0) == [0, 1, 2]
    assert refine.mmr(scores, similarity, 3, 0.5) == [0, 2, 1]
    assert refine.mmr(scores, similarity, 5, 0.5) == [0, 2, 1]


def test_select_cuts_min_score_then_pages():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert refine.select(scores, Query(text="t", k=2, offset=1), None) == [1, 2]
    assert refine.select(scores, Query(text="t", k=5, min_score=0.7), None) == [0, 1, 2]
    assert refine.select(scores, Query(text="t", k=2, offset=4), None) == [4]
    assert refine.select(scores, Query(text="t", k=2, offset=5), None) == []


def _rec(pid, score, title="t"):
    return Recommendation(publication_id=pid, title=title, score=score)


def test_the_generic_answer_takes_the_best_score_over_the_liked_less_the_unliked():
    rankings = {
        "a": [_rec("p1", 0.9), _rec("p2", 0.5), _rec("p3", 0.4)],
        "b": [_rec("p3", 0.8), _rec("p2", 0.6)],
        "c": [_rec("p3", 0.6)],
    }
    asked = []

    def recommend(query):
        asked.append(query)
        assert query.is_plain
        return [r for r in rankings[query.text] if query.accepts(r.publication_id, None, None)][: query.k]

    query = Query(like=(Example(text="a"), Example(text="b")), unlike=(Example(text="c"),), k=3)
    got = refine.answer(query, recommend)
    assert [(r.publication_id, round(r.score, 3)) for r in got] == [("p1", 0.9), ("p2", 0.6), ("p3", 0.5)]
    assert refine.answer(Query(text="a", k=1, offset=1), recommend) == [rankings["a"][1]]
