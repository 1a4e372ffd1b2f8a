"""Query vectors of ``like``/``unlike`` examples, and batched encoding.

A query with examples is answered as one query whose vectors combine them (Rocchio,
:mod:`recsys.refine`): its mean vector is the normalised mean of the liked examples'
mean vectors less ``UNLIKE_WEIGHT`` times the mean of the unliked ones; its lexical
scores are the liked examples' mean TF-IDF cosines less ``UNLIKE_WEIGHT`` times the
unliked ones' mean, clipped at 0, so the fused score stays on 0–1. Its query sentences
(for evidence, and the sentence-index searches) are the liked examples' sentences.

:class:`Encoded` holds the vectors of every text sentence of a batch of queries,
encoded in one encoder call (``AnnoyEngine.recommend_many``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recsys.domain import Example, Query
from recsys.refine import UNLIKE_WEIGHT
from recsys.text import split_sentences
from recsys_engine_annoy.ranking import MAX_SENTENCE_SEARCHES, Fusion, QueryVectors, mean_vector

__all__ = ["Encoded", "combine", "combine_fusion", "examples_of", "query_sentences", "texts_of"]


def query_sentences(text: str) -> list[str]:
    """The sentences a query text is encoded as."""
    return split_sentences(text) or [text]


def texts_of(queries: Iterable[Query]) -> list[str]:
    """Every text of the queries: their own and their examples'."""
    found = []
    for query in queries:
        if query.text is not None:
            found.append(query.text)
        found.extend(e.text for e in (*query.like, *query.unlike) if e.text is not None)
    return found


@dataclass(frozen=True)
class Encoded:
    """Sentence vectors encoded ahead (one encoder call for a batch), by sentence."""

    vectors: dict[str, NDArray[np.float32]]

    @classmethod
    def of(cls, texts: Sequence[str], encode: Callable[[list[str]], NDArray[np.float32]]) -> Encoded:
        sentences = list(dict.fromkeys(s for text in texts for s in query_sentences(text)))
        if not sentences:
            return cls({})
        vectors = encode(sentences)
        return cls({s: np.asarray(vectors[i], dtype=np.float32) for i, s in enumerate(sentences)})

    def get(self, sentences: list[str]) -> NDArray[np.float32] | None:
        if not all(s in self.vectors for s in sentences):
            return None
        return np.stack([self.vectors[s] for s in sentences])


def combine(
    liked: Sequence[QueryVectors], unliked: Sequence[QueryVectors], own_row: int | None = None,
) -> QueryVectors:
    """One query's vectors from its liked and unliked examples' (see the module docstring)."""
    mean: NDArray[np.float64] = np.mean(np.stack([qv.mean for qv in liked]), axis=0, dtype=np.float64)
    if unliked:
        mean = mean - UNLIKE_WEIGHT * np.mean(np.stack([qv.mean for qv in unliked]), axis=0, dtype=np.float64)
    return QueryVectors(
        sentences=[s for qv in liked for s in qv.sentences],
        vectors=np.concatenate([qv.vectors for qv in liked]).astype(np.float32),
        mean=mean_vector(mean[None, :].astype(np.float32)),
        own_row=own_row,
        sentence_searches=0 if len(liked) == 1 and liked[0].own_row is not None else MAX_SENTENCE_SEARCHES,
    )


def combine_fusion(weight: float, liked: Sequence[NDArray[np.float64]],
                   unliked: Sequence[NDArray[np.float64]]) -> Fusion:
    """The lexical half for combined examples: mean liked scores less UNLIKE_WEIGHT times
    the mean unliked ones, clipped at 0."""
    scores = np.mean(liked, axis=0)
    if unliked:
        scores = np.maximum(scores - UNLIKE_WEIGHT * np.mean(unliked, axis=0), 0.0)
    return Fusion(weight, np.asarray(scores, dtype=np.float64))


def examples_of(query: Query) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """The liked examples (the query's own text or publication when it has no ``like``) and the unliked."""
    liked = query.like or (Example(text=query.text, publication_id=query.publication_id),)
    return liked, query.unlike
