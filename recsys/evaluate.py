"""How good an engine's recommendations are, on a labelled corpus: the measures of ``recsys evaluate``.

Three kinds of query, drawn with a seed from the corpus (:func:`draw_queries`):

by-id
    ``publication_id`` of a labelled publication; **same-label precision@10**: the share of
    the 10 results with the query's label (the publication itself is never returned).
text
    a sentence of a labelled publication's abstract (its middle one) as ``text``, the
    publication itself excluded (``exclude_ids``); **same-label precision@10**.
known-item
    a publication's title as ``text``, against an engine built over the same corpus with
    every title left out of the index (:func:`withhold_titles`), so the title's words
    must be found in the abstract; **MRR@10** (1 / rank of the publication in the top 10,
    0 when absent), **recall@1** and **recall@10**.
like
    ``like`` with :data:`LIKE_SIZE` publications of one label (drawn with their own
    seeded generator, so the other kinds' queries do not change); **same-label
    precision@10** of the engine's own answer (the built-in engines: the mean of the
    examples' vectors), of the generic best-score combination (:func:`recsys.refine.answer`:
    a candidate's best score over the examples), and of each liked publication alone as a
    by-id query (the others of the group excluded): the best of them per group
    (``best_single``) and their mean (``mean_single``).

Engine-agnostic: everything goes through :meth:`recsys.engine.Engine.recommend`. Only
labels that occur at least twice count for the precision queries (a lone label cannot
be matched). ``p@10`` divides by 10 even when fewer results come back.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from recsys import refine
from recsys.domain import Example, Publication, Query
from recsys.engine import Engine
from recsys.errors import InvalidQuery, UnknownPublication
from recsys.query_limits import has_words
from recsys.text import split_sentences

__all__ = ["K", "LIKE_SIZE", "QuerySet", "draw_queries", "evaluate", "known_item", "like", "withhold_titles"]

#: The depth of every measure.
K = 10
#: Titles shorter than this many words make no known-item query (e.g. "Editorial").
MIN_TITLE_WORDS = 4
#: Publications liked together in a like query.
LIKE_SIZE = 3


@dataclass(frozen=True)
class QuerySet:
    """Queries drawn from a corpus with ``seed``: by-id ids, ``(text, label, source id)``
    text queries and ``(title, id)`` known-item queries."""

    seed: int
    by_id: tuple[tuple[str, str], ...]
    text: tuple[tuple[str, str, str], ...]
    known: tuple[tuple[str, str], ...]
    #: ``(ids, label)``: LIKE_SIZE publications of one label.
    like: tuple[tuple[tuple[str, ...], str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "by_id": len(self.by_id), "text": len(self.text), "known_item": len(self.known),
                "like": len(self.like)}


def draw_queries(
    publications: Sequence[Publication], *, seed: int = 42, by_id: int = 500, text: int = 300, known: int = 300,
    like: int = 0,
) -> QuerySet:
    """Draw up to ``by_id`` / ``text`` / ``known`` queries of each kind (fewer when the
    corpus has fewer candidates); the same corpus and seed give the same queries."""
    counts = Counter(p.label for p in publications if p.label)
    labelled = [p for p in publications if p.label and counts[p.label] >= 2]
    rng = random.Random(seed)
    by_id_pubs = rng.sample(labelled, min(by_id, len(labelled)))
    texts: list[tuple[str, str, str]] = []
    for pub in rng.sample(labelled, len(labelled)):
        if len(texts) >= text:
            break
        sentences = [s for s in split_sentences(pub.abstract) if has_words(s)]
        if sentences and pub.label:
            texts.append((sentences[len(sentences) // 2], pub.label, pub.id))
    titled = [p for p in publications if len(p.title.split()) >= MIN_TITLE_WORDS]
    known_pubs = rng.sample(titled, min(known, len(titled)))
    return QuerySet(
        seed=seed,
        by_id=tuple((p.id, str(p.label)) for p in by_id_pubs),
        text=tuple(texts),
        known=tuple((p.title, p.id) for p in known_pubs),
        like=_like_groups(labelled, seed, like),
    )


def _like_groups(labelled: Sequence[Publication], seed: int, count: int) -> tuple[tuple[tuple[str, ...], str], ...]:
    """``count`` groups of LIKE_SIZE publications sharing a label (one with more than LIKE_SIZE)."""
    by_label: dict[str, list[Publication]] = {}
    for pub in labelled:
        by_label.setdefault(str(pub.label), []).append(pub)
    pool = [p for p in labelled if len(by_label[str(p.label)]) > LIKE_SIZE]
    if not pool or count <= 0:
        return ()
    rng = random.Random(f"{seed}:like")
    groups = []
    for _ in range(count):
        label = str(rng.choice(pool).label)
        groups.append((tuple(p.id for p in rng.sample(by_label[label], LIKE_SIZE)), label))
    return tuple(groups)


def withhold_titles(publications: Sequence[Publication]) -> list[Publication]:
    """The corpus with every title left out of what engines index (the known-item setup)."""
    return [dataclasses.replace(p, title="") for p in publications]


def evaluate(engine: Engine, queries: QuerySet, *, titles_withheld: Engine | None = None) -> dict[str, Any]:
    """Measure ``engine`` on ``queries``; the known-item measures need ``titles_withheld``
    (the same engine built over :func:`withhold_titles` of the corpus) and are None without it.

    Returns ``{"by_id": {"p@10", "queries"}, "text": {"p@10", "queries"}, "known_item":
    {"mrr@10", "recall@1", "recall@10", "queries"} | None, "ms_per_query"}``.
    """
    started = time.perf_counter()
    asked = 0
    by_id: list[float] = []
    for pub_id, label in queries.by_id:
        try:
            results = engine.recommend(Query(publication_id=pub_id, k=K))
        except UnknownPublication:
            continue
        asked += 1
        by_id.append(sum(r.label == label for r in results) / K)
    text: list[float] = []
    for sentence, label, source in queries.text:
        try:
            results = engine.recommend(Query(text=sentence, k=K, exclude_ids=frozenset({source})))
        except InvalidQuery:
            continue
        asked += 1
        text.append(sum(r.label == label for r in results) / K)
    liked = like(engine, queries.like) if queries.like else None
    if liked is not None:
        asked += liked["queries"] * (2 + LIKE_SIZE)
    known = None
    if titles_withheld is not None:
        known = known_item(titles_withheld, queries.known)
        asked += known["queries"]
    seconds = time.perf_counter() - started
    return {
        "by_id": {"p@10": _mean(by_id), "queries": len(by_id)},
        "text": {"p@10": _mean(text), "queries": len(text)},
        "known_item": known,
        "like": liked,
        "ms_per_query": round(1000 * seconds / asked, 2) if asked else None,
    }


def like(engine: Engine, groups: Sequence[tuple[tuple[str, ...], str]]) -> dict[str, Any]:
    """Same-label p@10 of ``like`` queries: the engine's own combination, the generic
    best-score one, and the liked publications alone (best and mean per group)."""
    own: list[float] = []
    best_score: list[float] = []
    best_single: list[float] = []
    mean_single: list[float] = []

    def precision(query: Query, label: str) -> float:
        return sum(r.label == label for r in engine.recommend(query)) / K

    def generic(query: Query, label: str) -> float:
        return sum(r.label == label for r in refine.answer(query, engine.recommend)) / K

    for ids, label in groups:
        query = Query(like=tuple(Example(publication_id=i) for i in ids), k=K)
        try:
            own.append(precision(query, label))
        except UnknownPublication:
            continue
        best_score.append(generic(query, label))
        singles = [precision(Query(publication_id=i, k=K, exclude_ids=frozenset(ids) - {i}), label) for i in ids]
        best_single.append(max(singles))
        mean_single.append(sum(singles) / len(singles))
    return {"p@10": _mean(own), "best_score_p@10": _mean(best_score), "best_single_p@10": _mean(best_single),
            "mean_single_p@10": _mean(mean_single), "size": LIKE_SIZE, "queries": len(own)}


def known_item(engine: Engine, queries: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """MRR@10, recall@1 and recall@10 of ``(title, id)`` queries on an engine built
    without titles."""
    ranks: list[int | None] = []
    for title, pub_id in queries:
        try:
            results = engine.recommend(Query(text=title, k=K))
        except InvalidQuery:
            continue
        found = [r.publication_id for r in results]
        ranks.append(found.index(pub_id) + 1 if pub_id in found else None)
    count = len(ranks)
    return {
        "mrr@10": _mean([1.0 / r if r else 0.0 for r in ranks]),
        "recall@1": _mean([1.0 if r == 1 else 0.0 for r in ranks]),
        "recall@10": _mean([1.0 if r else 0.0 for r in ranks]),
        "queries": count,
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None
