"""Ranking: from query sentence vectors to scored publications with evidence.

The score of a publication is the cosine between the query's mean sentence vector and
the publication's mean sentence vector (both normalised). Measured on the real corpus
(docs/engine-annoy.md), this ranks same-topic papers better than summing each query
sentence's best-matching sentence, and as well as blends of the two.

Candidates come from the Annoy index over publication vectors and, for text queries,
from the publications of the stored sentences nearest to each query sentence (the
sentence index); every candidate is then scored exactly. When the publication index is
searched exactly (below 50,000 publications, see ann.py), its candidates hold the exact
top k already and the sentence index is not searched. Otherwise, a text query's mean
vector lies farther from the papers' mean vectors than a paper's own does, so Annoy's
trees route it less well: text queries search the publication index with twice the
derived ``search_k`` (:data:`TEXT_EFFORT`), and the sentence index, which only adds
candidates, with Annoy's own ``10 * trees * hits``. Measured with Annoy on the full
corpus (36,949 papers, 321,074 sentences; docs/engine-annoy.md), this found 0.979 of the
exact top 10 for a one-sentence text in 3.4 ms, where searching both indexes at the
derived ``search_k`` found 0.959 in 5.7 ms. Filters are applied before
the top ``k`` is cut: the search over-fetches in proportion to the share of
publications that pass them, and a selective filter is answered by scoring every
publication that passes, so ``k`` results come back whenever ``k`` publications match.

Evidence: for each recommended publication, each query sentence with the stored
sentence of that publication it is most similar to, best first (at most
:data:`MAX_EVIDENCE`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recsys.domain import Evidence, Query, Recommendation
from recsys_engine_annoy.ann import VectorIndex, similarities
from recsys_engine_annoy.storage import PublicationTable, Texts

__all__ = ["MAX_EVIDENCE", "EngineData", "QueryVectors", "rank"]

#: Evidence pairs kept per recommendation (the best ones).
MAX_EVIDENCE = 10
#: Candidates scored exactly for a top ``k``: at least this many, and at least 3k.
MIN_CANDIDATES = 30
#: Stored sentences taken from the sentence index per query sentence, as extra candidates.
SENTENCE_HITS = 10
#: Effort of a text query's publication-index search (the derived search_k's factor).
TEXT_EFFORT = 2.0
#: Effort of the sentence-index searches for extra candidates: Annoy's own rule.
SENTENCE_EFFORT = 0.0
#: Query sentences whose sentence-index hits add candidates (the first ones; longer
#: texts are well served by the mean vector alone).
MAX_SENTENCE_SEARCHES = 4
#: A filter that lets at most this share of publications through is answered by
#: scoring every one that passes, rather than by over-fetching from the index.
EXACT_FILTER_SHARE = 0.05
#: ...as is any filter that lets at most this many through.
EXACT_FILTER_ROWS = 2_000


@dataclass(frozen=True)
class EngineData:
    """Everything a query reads; built by fit() or load(), never changed afterwards."""

    publications: PublicationTable
    texts: Texts
    starts: NDArray[np.int64]
    owners: NDArray[np.int32]
    sentence_vectors: NDArray[np.float16]
    publication_vectors: NDArray[np.float32]
    sentence_index: VectorIndex
    publication_index: VectorIndex


@dataclass(frozen=True)
class QueryVectors:
    """A query's sentences and their unit vectors; ``own_row`` for a by-id query."""

    sentences: list[str]
    vectors: NDArray[np.float32]
    mean: NDArray[np.float32]
    own_row: int | None = None
    #: How many of the query's sentences add the publications of their nearest stored
    #: sentences as candidates (0: the publication index alone).
    sentence_searches: int = MAX_SENTENCE_SEARCHES


def mean_vector(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """The normalised mean of unit vectors (a zero vector stays zero)."""
    mean = vectors.mean(axis=0, dtype=np.float64)
    norm = float(np.linalg.norm(mean))
    return np.asarray(mean / norm if norm > 0 else mean, dtype=np.float32)


def rank(data: EngineData, query: Query, qv: QueryVectors) -> list[Recommendation]:
    """The top ``query.k`` publications for ``qv``, filters applied, with evidence."""
    pubs = data.publications
    allowed = pubs.allowed(query, qv.own_row)
    passing = len(pubs) if allowed is None else int(allowed.sum())
    k = min(query.k, passing)
    if k == 0:
        return []
    rows = _candidates(data, qv, allowed, passing, k)
    scores = similarities(np.asarray(data.publication_vectors[rows]), qv.mean)
    order = np.lexsort((rows, -scores))[:k]  # ties broken by row: the same answer every time
    return [_recommendation(data, qv, int(rows[i]), float(scores[i])) for i in order]


def _candidates(
    data: EngineData, qv: QueryVectors, allowed: NDArray[np.bool_] | None, passing: int, k: int
) -> NDArray[np.int64]:
    total = len(data.publications)
    if allowed is not None and (passing <= EXACT_FILTER_ROWS or passing <= EXACT_FILTER_SHARE * total):
        return np.flatnonzero(allowed).astype(np.int64)
    pool = max(MIN_CANDIDATES, 3 * k)
    fetch = min(total, pool if allowed is None else math.ceil(pool * total / passing))
    effort = 1.0 if qv.own_row is not None else TEXT_EFFORT
    while True:
        found, _ = data.publication_index.search(qv.mean, fetch, effort=effort)
        kept = found if allowed is None else found[allowed[found]]
        if len(kept) >= min(pool, passing) or fetch >= total:
            break
        fetch = min(total, fetch * 4)
    if len(kept) < k:  # the index missed too many that pass: score them all
        return np.flatnonzero(allowed if allowed is not None else np.ones(total, dtype=bool)).astype(np.int64)
    if qv.sentence_searches > 0 and not data.publication_index.settings.exact:
        # (an exact publication search already holds the exact top k: nothing to add)
        extra = _sentence_candidates(data, qv)
        if allowed is not None:
            extra = extra[allowed[extra]]
        kept = np.union1d(kept, extra)
    return np.asarray(kept, dtype=np.int64)


def _sentence_candidates(data: EngineData, qv: QueryVectors) -> NDArray[np.int64]:
    index, vectors = data.sentence_index, qv.vectors[: qv.sentence_searches]
    hits = [index.search(vector, SENTENCE_HITS, effort=SENTENCE_EFFORT)[0] for vector in vectors]
    if not hits:
        return np.empty(0, dtype=np.int64)
    return np.unique(data.owners[np.concatenate(hits)]).astype(np.int64)


def _recommendation(data: EngineData, qv: QueryVectors, row: int, score: float) -> Recommendation:
    pubs = data.publications
    return Recommendation(
        publication_id=pubs.ids[row],
        title=pubs.titles[row],
        score=score,
        evidence=_evidence(data, qv, row),
        label=pubs.label(row),
        year=pubs.year(row),
    )


def _evidence(data: EngineData, qv: QueryVectors, row: int) -> tuple[Evidence, ...]:
    start, end = int(data.starts[row]), int(data.starts[row + 1])
    stored = np.asarray(data.sentence_vectors[start:end], dtype=np.float32)
    similarity = qv.vectors @ stored.T  # query sentences x this publication's sentences
    best = similarity.argmax(axis=1)
    best_scores = similarity[np.arange(len(best)), best]
    order = np.lexsort((np.arange(len(best)), -best_scores))[:MAX_EVIDENCE]
    return tuple(
        Evidence(query_sentence=qv.sentences[i], sentence=data.texts[start + int(best[i])], score=float(best_scores[i]))
        for i in order
    )
