"""Ranking: from query sentence vectors to scored publications with evidence.

The score of a publication is the cosine between the query's mean sentence vector and
the publication's mean sentence vector (both normalised). Measured on the real corpus
(docs/engine-annoy.md), this ranks same-topic papers better than summing each query
sentence's best-matching sentence, and as well as blends of the two.

Each segment gives its candidates: a segment without Annoy files (below 50,000
publications, see segments.py) is scanned exactly, which holds its exact top k; a larger
one is searched with its Annoy index over publication vectors and, for text queries,
adds the publications of the stored sentences nearest to each query sentence (its
sentence index), every candidate then scored exactly. The best ``k`` of all segments'
candidates are the answer, ties broken by publication id, so the answer does not depend
on how the corpus is cut into segments: an exact search over segments gives what one
segment would. Tombstoned publications are filtered out like any other row that does not
pass. In an Annoy segment, a text query's mean
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

from recsys import refine
from recsys.domain import Evidence, Query, Recommendation
from recsys_engine_annoy.ann import similarities
from recsys_engine_annoy.lexical import matched_terms
from recsys_engine_annoy.segments import Segment
from recsys_engine_annoy.storage import PublicationTable

__all__ = ["MAX_EVIDENCE", "EngineData", "Fusion", "QueryVectors", "rank"]

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

_EMPTY_ROWS = np.empty(0, dtype=np.int64)
_EMPTY_SCORES = np.empty(0, dtype=np.float32)


@dataclass(frozen=True)
class EngineData:
    """Everything a query reads; built by fit() or load(), never changed afterwards.

    Rows are global: the rows of every segment one after the other (``offsets[i]`` is the
    first row of segment ``i``; the last entry is the number of stored rows).
    """

    segments: tuple[Segment, ...]
    publications: PublicationTable
    offsets: NDArray[np.int64]

    @classmethod
    def of(cls, segments: tuple[Segment, ...], publications: PublicationTable) -> EngineData:
        offsets = np.zeros(len(segments) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in segments])
        return cls(segments, publications, offsets)

    def locate(self, row: int) -> tuple[Segment, int]:
        """The segment holding global ``row`` and the row within it."""
        number = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return self.segments[number], row - int(self.offsets[number])

    def scores(self, rows: NDArray[np.int64], mean: NDArray[np.float32]) -> NDArray[np.float32]:
        """The score of each of the (sorted) global ``rows``."""
        out = np.empty(len(rows), dtype=np.float32)
        bounds = np.searchsorted(rows, self.offsets)
        for number, segment in enumerate(self.segments):
            low, high = int(bounds[number]), int(bounds[number + 1])
            if high > low:
                local = rows[low:high] - self.offsets[number]
                out[low:high] = similarities(np.asarray(segment.publication_vectors[local]), mean)
        return out


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


@dataclass(frozen=True)
class Fusion:
    """The hybrid score: ``(1 - weight) * max(0, cosine) + weight * lexical[row]``, on 0-1.

    ``lexical``: the TF-IDF cosine of the query with every global row (0-1)."""

    weight: float
    lexical: NDArray[np.float64]

    def fuse(self, dense: NDArray[np.float32], rows: NDArray[np.int64] | slice) -> NDArray[np.float32]:
        fused = (1.0 - self.weight) * np.maximum(dense, 0.0) + self.weight * self.lexical[rows]
        return np.asarray(fused, dtype=np.float32)

    def best(self, first: int, rows: int, count: int) -> NDArray[np.int64]:
        """The (local) rows of the ``count`` best positive lexical scores among global rows ``first:first+rows``."""
        part = self.lexical[first:first + rows]
        positive = np.flatnonzero(part > 0)
        if len(positive) > count:
            positive = positive[np.argpartition(part[positive], len(positive) - count)[len(positive) - count:]]
        return positive.astype(np.int64)


def mean_vector(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """The normalised mean of unit vectors (a zero vector stays zero)."""
    mean = vectors.mean(axis=0, dtype=np.float64)
    norm = float(np.linalg.norm(mean))
    return np.asarray(mean / norm if norm > 0 else mean, dtype=np.float32)


def rank(data: EngineData, query: Query, qv: QueryVectors, fusion: Fusion | None = None) -> list[Recommendation]:
    """The top ``query.k`` publications for ``qv``, filters applied, with evidence; scores
    fused with the lexical ones when ``fusion`` is given (else the cosine)."""
    pubs = data.publications
    allowed = pubs.allowed(query, qv.own_row)
    excluded = pubs.excluded(qv.own_row)
    passing = len(pubs) - len(excluded) if allowed is None else int(np.count_nonzero(allowed))
    k = min(refine.pool(query), passing)
    if k == 0:
        return []
    rows, scores = _candidates(data, qv, allowed, excluded, passing, k, fusion)
    best = _top_with_ties(scores, k)
    # ties broken by publication id: the same answer however the rows are cut into segments
    order = sorted(best.tolist(), key=lambda i: (-float(scores[i]), pubs.ids[int(rows[i])]))[:k]
    if not query.is_plain:  # min_score, diversity, offset
        ranked = np.asarray(order, dtype=np.int64)

        def similarity(positions: NDArray[np.int64]) -> NDArray[np.float32]:
            vectors = publication_vectors(data, rows[ranked[positions]])
            return np.asarray(vectors @ vectors.T, dtype=np.float32)

        order = [order[p] for p in refine.select(scores[ranked], query, similarity)]
    return [_recommendation(data, qv, int(rows[i]), float(scores[i]), fusion) for i in order]


def publication_vectors(data: EngineData, rows: NDArray[np.int64]) -> NDArray[np.float32]:
    """The (unit) publication vectors of global ``rows``, in their order."""
    out = np.empty((len(rows), data.segments[0].publication_vectors.shape[1]), dtype=np.float32)
    for at, row in enumerate(rows.tolist()):
        segment, local = data.locate(int(row))
        out[at] = segment.publication_vectors[local]
    return out


def _top_with_ties(scores: NDArray[np.float32], wanted: int) -> NDArray[np.int64]:
    """Positions of the ``wanted`` highest scores, and of every score equal to the lowest of them."""
    if wanted >= len(scores):
        return np.arange(len(scores), dtype=np.int64)
    position = len(scores) - wanted
    kth = scores[np.argpartition(scores, position)[position]]
    return np.flatnonzero(scores >= kth).astype(np.int64)


def _candidates(
    data: EngineData, qv: QueryVectors, allowed: NDArray[np.bool_] | None, excluded: NDArray[np.int64],
    passing: int, k: int, fusion: Fusion | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Global rows that may be in the top ``k`` and their scores. ``allowed``: the rows that
    pass the query's filters (None: no filters, every row but the ``excluded`` ones)."""
    if allowed is not None and (passing <= EXACT_FILTER_ROWS or passing <= EXACT_FILTER_SHARE * data.publications.live):
        rows = np.flatnonzero(allowed).astype(np.int64)
        dense = data.scores(rows, qv.mean)
        return rows, dense if fusion is None else fusion.fuse(dense, rows)
    found_rows, found_scores = [], []
    bounds = np.searchsorted(excluded, data.offsets)
    for number, segment in enumerate(data.segments):
        first = int(data.offsets[number])
        rows_out = excluded[bounds[number]:bounds[number + 1]] - first
        gate = _Gate(allowed[first:first + len(segment)] if allowed is not None else None, rows_out, len(segment))
        if segment.publication_index is None:
            rows, scores = _scan(segment, qv.mean, gate, k, first, fusion)
        else:
            rows, scores = _search(segment, qv, gate, k, first, fusion)
        found_rows.append(rows + first)
        found_scores.append(scores)
    return np.concatenate(found_rows), np.concatenate(found_scores)


@dataclass(frozen=True)
class _Gate:
    """Which rows of one segment may be returned: those of ``mask`` (when the query has
    filters, exclusions applied), else all but the ``excluded`` ones (sorted)."""

    mask: NDArray[np.bool_] | None
    excluded: NDArray[np.int64]
    rows: int

    @property
    def passing(self) -> int:
        return self.rows - len(self.excluded) if self.mask is None else int(np.count_nonzero(self.mask))

    @property
    def selective(self) -> bool:
        """Few enough rows pass to score them all rather than search."""
        return self.mask is not None and (self.passing <= EXACT_FILTER_ROWS or
                                          self.passing <= EXACT_FILTER_SHARE * self.rows)

    def keep(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        if self.mask is not None:
            return rows[self.mask[rows]]
        if not len(self.excluded):
            return rows
        position = np.minimum(np.searchsorted(self.excluded, rows), len(self.excluded) - 1)
        kept: NDArray[np.int64] = rows[self.excluded[position] != rows]
        return kept

    def every(self) -> NDArray[np.int64]:
        if self.mask is not None:
            return np.flatnonzero(self.mask).astype(np.int64)
        return np.setdiff1d(np.arange(self.rows, dtype=np.int64), self.excluded)


def _scan(
    segment: Segment, mean: NDArray[np.float32], gate: _Gate, k: int, first: int = 0, fusion: Fusion | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """An exact scan of the segment: its top ``k`` (with ties) among the rows that pass."""
    wanted = min(k, gate.passing)
    if wanted == 0:
        return _EMPTY_ROWS, _EMPTY_SCORES
    scores = similarities(segment.publication_vectors, mean)
    if fusion is not None:
        scores = fusion.fuse(scores, slice(first, first + len(segment)))
    if gate.mask is not None:
        np.putmask(scores, ~gate.mask, np.float32(-np.inf))
    else:
        scores[gate.excluded] = -np.inf
    top = _top_with_ties(scores, wanted)
    return top, scores[top]


def _search(
    segment: Segment, qv: QueryVectors, gate: _Gate, k: int, first: int = 0, fusion: Fusion | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Candidates of an Annoy segment, scored exactly."""
    index = segment.publication_index
    assert index is not None
    total, passing = len(segment), gate.passing
    wanted = min(k, passing)
    if wanted == 0:
        return _EMPTY_ROWS, _EMPTY_SCORES
    pool = max(MIN_CANDIDATES, 3 * k)
    if gate.selective:
        kept = gate.every()
    else:
        fetch = min(total, math.ceil(pool * total / passing))
        effort = 1.0 if qv.own_row is not None else TEXT_EFFORT
        while True:
            found, _ = index.search(qv.mean, fetch, effort=effort)
            kept = gate.keep(found)
            if len(kept) >= min(pool, passing) or fetch >= total:
                break
            fetch = min(total, fetch * 4)
        if len(kept) < wanted:  # the index missed too many that pass: score them all
            kept = gate.every()
        elif qv.sentence_searches > 0 and segment.sentence_index is not None:
            kept = np.union1d(kept, gate.keep(_sentence_candidates(segment, qv)))
        if fusion is not None:  # the lexical signal's own best, which the vector indexes may miss
            kept = np.union1d(kept, gate.keep(fusion.best(first, total, pool)))
    kept = np.asarray(kept, dtype=np.int64)
    dense = similarities(np.asarray(segment.publication_vectors[kept]), qv.mean)
    return kept, dense if fusion is None else fusion.fuse(dense, kept + first)


def _sentence_candidates(segment: Segment, qv: QueryVectors) -> NDArray[np.int64]:
    """The publications owning the stored sentences nearest to the query's first sentences."""
    index = segment.sentence_index
    assert index is not None
    hits = [index.search(vector, SENTENCE_HITS, effort=SENTENCE_EFFORT)[0]
            for vector in qv.vectors[: qv.sentence_searches]]
    if not hits:
        return _EMPTY_ROWS
    owners = np.searchsorted(segment.starts, np.concatenate(hits), side="right") - 1
    return np.unique(owners).astype(np.int64)


def _recommendation(data: EngineData, qv: QueryVectors, row: int, score: float,
                    fusion: Fusion | None = None) -> Recommendation:
    pubs = data.publications
    lexical = fusion is not None and fusion.weight > 0 and fusion.lexical[row] > 0
    return Recommendation(
        publication_id=pubs.ids[row],
        title=pubs.titles[row],
        score=score,
        evidence=_evidence(data, qv, row, terms=lexical),
        label=pubs.label(row),
        year=pubs.year(row),
    )


def _evidence(data: EngineData, qv: QueryVectors, row: int, *, terms: bool = False) -> tuple[Evidence, ...]:
    segment, local = data.locate(row)
    start, end = int(segment.starts[local]), int(segment.starts[local + 1])
    stored = np.asarray(segment.sentence_vectors[start:end], dtype=np.float32)
    similarity = qv.vectors @ stored.T  # query sentences x this publication's sentences
    best = similarity.argmax(axis=1)
    best_scores = similarity[np.arange(len(best)), best]
    order = np.lexsort((np.arange(len(best)), -best_scores))[:MAX_EVIDENCE]
    return tuple(
        Evidence(query_sentence=qv.sentences[i], sentence=(sentence := segment.texts[start + int(best[i])]),
                 score=float(best_scores[i]), terms=matched_terms(qv.sentences[i], sentence) if terms else ())
        for i in order
    )
