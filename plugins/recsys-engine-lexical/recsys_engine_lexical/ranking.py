"""Exact top-k over a full score vector, with filters, and the evidence pairs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["best_pairs", "top_rows"]


def _best_candidates(
    scores: npt.NDArray[np.floating],
    candidates: npt.NDArray[np.intp],
    count: int,
    order: npt.NDArray[np.integer] | None,
) -> list[int]:
    """At least ``count`` of ``candidates`` with the highest scores (all ties at the
    boundary included), ordered by score descending, then ``order`` (default: row) ascending."""
    if count < len(candidates):
        values = scores[candidates]
        threshold = np.partition(values, len(values) - count)[len(values) - count]
        candidates = candidates[values >= threshold]
    ties = candidates if order is None else order[candidates]
    ranked = np.lexsort((ties, -scores[candidates]))
    return [int(row) for row in candidates[ranked]]


def top_rows(
    scores: npt.NDArray[np.floating],
    k: int,
    accept: Callable[[int], bool],
    *,
    skip: int = 0,
    order: npt.NDArray[np.integer] | None = None,
) -> list[int]:
    """The rows of the ``k`` best positive scores that ``accept`` allows, best first
    (ties: lower ``order[row]`` first; without ``order``, lower row first).

    Exact whatever the filter: it looks at the best ``k + skip`` candidates first
    (``skip``: how many the filter is known to drop, e.g. the query's own row) and
    widens the window fourfold until ``k`` are accepted or no candidate is left.
    """
    candidates = np.flatnonzero(scores > 0)
    window = k + skip
    while True:
        ranked = _best_candidates(scores, candidates, window, order)
        accepted = [row for row in ranked if accept(row)][:k]
        if len(accepted) == k or len(ranked) == len(candidates):
            return accepted
        window *= 4


def best_pairs(similarity: npt.NDArray[np.floating], limit: int) -> list[tuple[int, int, float]]:
    """The ``limit`` best evidence pairs of a ``[sentences x query sentences]`` cosine
    matrix: for each query sentence its best-matching sentence, as
    ``(query_row, sentence_row, cosine)``, best first, positive cosines only.

    Ties go to the earlier sentence, and between query sentences to the earlier one.
    """
    if similarity.size == 0:
        return []
    best_sentence = similarity.argmax(axis=0)
    best = similarity[best_sentence, np.arange(similarity.shape[1])]
    positive: list[int] = np.flatnonzero(best > 0).tolist()
    ranked = sorted(positive, key=lambda q: (-best[q], q))[:limit]
    return [(q, int(best_sentence[q]), float(best[q])) for q in ranked]
