"""What every engine does with a query's ``like``/``unlike``, ``min_score``, ``diversity`` and ``offset``.

An engine ranks candidates for a query (its text, its publication, or the combination of
its ``like`` and ``unlike`` examples: see below), then this module picks the page:

1. the candidates: the best :func:`pool` of the ranking (``offset + k``; with
   ``diversity``, ``max(3 * (offset + k), 50)`` of them, :data:`MIN_POOL`);
2. ``min_score``: candidates scoring below it are dropped;
3. ``diversity`` λ > 0: the candidates are reordered by maximal marginal relevance
   (Carbonell & Goldstein 1998): each next one maximises ``(1 - λ) * score - λ * max
   similarity to the ones already chosen`` (similarities of publication vectors, in the
   engine's own space; scores and similarities on 0–1). λ = 0 keeps the ranking as it is;
4. ``offset``: the first ``offset`` are skipped and the next ``k`` returned, so ``offset:
   5, k: 5`` gives ranks 6 to 10 of the same ranking.

Each result keeps its own score (higher is better): ``min_score`` means the same with or
without diversity.

``like`` with several examples (the measured choice, docs/api.md, *like and unlike*):
the built-in engines combine the examples' vectors (Rocchio: the mean of the liked
examples' vectors less :data:`UNLIKE_WEIGHT` times the mean of the unliked ones), then
rank as for one query. :func:`answer` is the generic way for an engine that can only rank
plain queries (:meth:`recsys.engine.Engine.recommend` without the extensions, at most
``MAX_K`` results each): each example is ranked alone and a candidate's score is its
best score over the liked examples (:data:`BEST` mode) less :data:`UNLIKE_WEIGHT` times
its best over the unliked ones; similarities for diversity are then the overlap of the
results' title words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from recsys.domain import MAX_K, Example, Query, Recommendation

__all__ = ["MIN_POOL", "UNLIKE_WEIGHT", "answer", "example_query", "mmr", "pool", "select", "window"]

#: Candidates a diverse query chooses from: at least this many, and at least 3 (offset + k).
MIN_POOL = 50
#: How much the unliked examples pull away (Rocchio's gamma over beta).
UNLIKE_WEIGHT = 0.5

Similarity = Callable[[NDArray[np.int64]], NDArray[np.floating]]


def window(query: Query) -> int:
    """How many results of the ranking the page reaches: ``offset + k``."""
    return query.offset + query.k


def pool(query: Query) -> int:
    """How many candidates of the ranking to fetch for ``query``'s page."""
    return max(3 * window(query), MIN_POOL) if query.diversity > 0 else window(query)


def mmr(scores: NDArray[np.floating], similarity: NDArray[np.floating], count: int, diversity: float) -> list[int]:
    """Maximal marginal relevance: ``count`` positions of ``scores`` (best first), each next one
    maximising ``(1 - diversity) * score - diversity * max(similarity to the chosen)``;
    ties go to the earlier (better ranked) position."""
    size = len(scores)
    count = min(count, size)
    if count == 0:
        return []
    relevance = (1.0 - diversity) * np.asarray(scores, dtype=np.float64)
    closest = np.full(size, -np.inf)
    chosen: list[int] = []
    free = np.ones(size, dtype=bool)
    for _ in range(count):
        value = relevance - diversity * np.where(np.isfinite(closest), closest, 0.0)
        value[~free] = -np.inf
        pick = int(np.argmax(value))
        chosen.append(pick)
        free[pick] = False
        closest = np.maximum(closest, np.asarray(similarity[pick], dtype=np.float64))
    return chosen


def select(scores: NDArray[np.floating], query: Query, similarity: Similarity | None) -> list[int]:
    """The positions of ``query``'s page among candidates ranked best first with ``scores``
    (steps 2 to 4 of the module docstring). ``similarity(positions)``: their pairwise
    similarity matrix, needed only when ``query.diversity > 0``."""
    positions = np.arange(len(scores), dtype=np.int64)
    if query.min_score is not None:
        positions = positions[np.asarray(scores)[positions] >= query.min_score]
    if query.diversity > 0 and len(positions) > 1 and similarity is not None:
        order = mmr(np.asarray(scores)[positions], similarity(positions), window(query), query.diversity)
        positions = positions[order]
    return [int(p) for p in positions[query.offset:window(query)]]


def example_query(query: Query, example: Example, count: int) -> Query:
    """A plain query for one example of ``query``, with its filters, for ``count`` results."""
    return query.plain(text=example.text, publication_id=example.publication_id, k=count)


_WORDS = re.compile(r"[^\W_]+")


def _title_similarity(results: Sequence[Recommendation]) -> Similarity:
    words = [frozenset(_WORDS.findall(r.title.lower())) for r in results]

    def similarity(positions: NDArray[np.int64]) -> NDArray[np.float64]:
        chosen = [words[int(p)] for p in positions]
        out = np.zeros((len(chosen), len(chosen)))
        for i, a in enumerate(chosen):
            for j, b in enumerate(chosen):
                union = len(a | b)
                out[i, j] = len(a & b) / union if union else 0.0
        return out

    return similarity


def answer(query: Query, recommend: Callable[[Query], list[Recommendation]]) -> list[Recommendation]:
    """The generic answer to any query from ``recommend``, which ranks plain queries only.

    A plain query is passed through. Otherwise each example (or the query's own text or
    publication) is ranked alone with at most ``MAX_K`` results (so an engine that only has
    this reaches no deeper than rank ``MAX_K``), the rankings are combined (best score over
    the liked, less :data:`UNLIKE_WEIGHT` times the best over the unliked), and the page is
    picked by :func:`select`.
    """
    if query.is_plain:
        return recommend(query)
    count = min(pool(query), MAX_K)
    likes = query.like or (Example(text=query.text, publication_id=query.publication_id),)
    best: dict[str, Recommendation] = {}
    for example in likes:
        for found in recommend(example_query(query, example, count)):
            held = best.get(found.publication_id)
            if held is None or found.score > held.score:
                best[found.publication_id] = found
    penalty: dict[str, float] = {}
    for example in query.unlike:
        for found in recommend(example_query(query, example, MAX_K)):
            penalty[found.publication_id] = max(penalty.get(found.publication_id, 0.0), found.score)
    combined = [
        Recommendation(r.publication_id, r.title, r.score - UNLIKE_WEIGHT * penalty.get(r.publication_id, 0.0),
                       r.evidence, r.label, r.year)
        for r in best.values()
    ]
    combined.sort(key=lambda r: (-r.score, r.publication_id))
    scores = np.array([r.score for r in combined], dtype=np.float64)
    return [combined[p] for p in select(scores, query, _title_similarity(combined))]
