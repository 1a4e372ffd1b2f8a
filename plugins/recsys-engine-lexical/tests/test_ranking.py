"""Exact top-k with filters, and evidence pairs."""

from __future__ import annotations

import numpy as np

from recsys_engine_lexical.ranking import best_pairs, top_rows


def test_top_rows_orders_by_score_then_row_and_skips_zero_scores():
    scores = np.array([0.2, 0.0, 0.9, 0.2, 0.5, 0.0], dtype=np.float32)
    assert top_rows(scores, 3, lambda row: True) == [2, 4, 0]
    assert top_rows(scores, 10, lambda row: True) == [2, 4, 0, 3]


def test_top_rows_keeps_every_tie_at_the_window_edge():
    scores = np.array([0.5, 0.5, 0.5, 0.5, 0.9], dtype=np.float32)
    assert top_rows(scores, 2, lambda row: True) == [4, 0]
    assert top_rows(scores, 2, lambda row: row != 0) == [4, 1]


def test_top_rows_widens_until_enough_rows_pass_the_filter():
    scores = np.linspace(1.0, 0.001, 1000).astype(np.float32)
    wanted = [row for row in range(1000) if row % 97 == 3][:5]
    assert top_rows(scores, 5, lambda row: row % 97 == 3) == wanted
    assert top_rows(scores, 5, lambda row: row == 998) == [998]
    assert top_rows(scores, 5, lambda row: False) == []


def test_best_pairs_pairs_each_query_sentence_with_its_best_sentence():
    # rows: stored sentences; columns: query sentences
    similarity = np.array([[0.1, 0.0, 0.3], [0.7, 0.0, 0.3], [0.2, 0.0, 0.1]])
    assert best_pairs(similarity, 3) == [(0, 1, 0.7), (2, 0, 0.3)]
    assert best_pairs(similarity, 1) == [(0, 1, 0.7)]
    assert best_pairs(np.zeros((0, 2)), 3) == []
