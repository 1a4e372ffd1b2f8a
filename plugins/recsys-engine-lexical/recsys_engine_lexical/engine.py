"""LexicalEngine: TF-IDF over sentences, exact cosine scoring with scipy sparse.

Ranking: the cosine between the query's TF-IDF vector (all its words) and each
publication's TF-IDF vector (all words of its title, abstract and full text),
computed for every publication (a sparse matrix-vector product), so filters are
exact: ``Query.accepts`` is applied in score order until ``k`` publications
pass. Only publications sharing at least one term with the query (score > 0)
are returned, so a text of unknown words gives an empty list.

Evidence: for each query sentence, the best-matching sentence of the
recommended publication by the cosine of their own TF-IDF vectors; the
:data:`MAX_EVIDENCE` best pairs are kept. A by-id query uses the publication's
stored vector as the query and its sentences as the query sentences.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsys.config import Settings
from recsys.domain import Evidence, Publication, Query, Recommendation
from recsys.engine import NULL_PROGRESS, Engine, EngineMetadata, Progress
from recsys.errors import UnknownPublication
from recsys.text import split_sentences
from recsys_engine_lexical.files import load_index, save_index
from recsys_engine_lexical.index import LexicalIndex, build_index
from recsys_engine_lexical.ranking import best_pairs, top_rows
from recsys_engine_lexical.tokenizer import Tokenizer

__all__ = ["MAX_EVIDENCE", "LexicalEngine"]

#: Evidence pairs kept per recommendation, best first.
MAX_EVIDENCE = 3

logger = logging.getLogger(__name__)


class LexicalEngine(Engine):
    """TF-IDF engine over sentences (no torch). See the module docstring for scoring.

    ``stemming`` (default on) folds English plurals; it is stored with the index,
    so a loaded engine tokenizes queries as its build did.
    """

    name: ClassVar[str] = "lexical"

    def __init__(self, settings: Settings | None = None, *, stemming: bool = True) -> None:
        super().__init__(settings)
        self._tokenizer = Tokenizer(stemming=stemming)
        self._index: LexicalIndex | None = None

    @property
    def index(self) -> LexicalIndex:
        """The fitted or loaded index (RuntimeError before fit/load or after close)."""
        if self._index is None:
            raise RuntimeError("the lexical engine holds no index: call fit() or load() first (or it was closed)")
        return self._index

    def fit(
        self,
        publications: Sequence[Publication],
        *,
        progress: Progress = NULL_PROGRESS,
        previous: Path | None = None,
    ) -> None:
        started = time.monotonic()
        index = build_index(publications, self._tokenizer, progress)
        self._index = index
        logger.info(
            "lexical: indexed %d publications, %d sentences, %d terms in %.1fs",
            len(index.publications), len(index.sentences), len(index.terms), time.monotonic() - started,
        )

    def save(self, folder: Path) -> EngineMetadata:
        index = self.index
        save_index(index, folder)
        return EngineMetadata(
            publications=len(index.publications),
            sentences=len(index.sentences),
            extra={"terms": len(index.terms), "stemming": index.tokenizer.stemming, "weighting": "tfidf"},
        )

    @classmethod
    def load(cls, folder: Path, settings: Settings | None = None) -> LexicalEngine:
        index = load_index(folder)
        engine = cls(settings, stemming=index.tokenizer.stemming)
        engine._tokenizer = index.tokenizer
        engine._index = index
        return engine

    @property
    def publication_count(self) -> int:
        return len(self.index.publications)

    def close(self) -> None:
        """Drop the index; its memory maps close once no query still uses them."""
        self._index = None

    def recommend(self, query: Query) -> list[Recommendation]:
        index = self.index  # one reference for the whole query, even if close() runs meanwhile
        if query.publication_id is not None:
            row = index.row_of(query.publication_id)
            if row is None:
                raise UnknownPublication(
                    f"publication {query.publication_id!r} is not in this engine "
                    f"({len(index.publications)} publications); check the id or rebuild the engine"
                )
            start, end = index.sentence_rows(row)
            query_vector = index.publication_vectors[[row]]
            query_sentences = [index.sentences[i] for i in range(start, end)]
            sentence_vectors = index.sentence_vectors[start:end]
        else:
            assert query.text is not None  # a Query holds a text or a publication id
            query_sentences = split_sentences(query.text) or [query.text]
            tokens = [index.tokenizer(s) for s in query_sentences]
            # Row 0: the whole text; rows 1..: its sentences (one vectorize call).
            vectors = index.vectorize([[t for sentence in tokens for t in sentence], *tokens])
            query_vector, sentence_vectors = vectors[[0]], vectors[1:]
        scores = _scores(index, query_vector)

        def accept(row: int) -> bool:
            pub = index.publications[row]
            return query.accepts(pub.id, pub.label, pub.year)

        skip = len(query.exclude_ids) + (query.publication_id is not None)
        rows = top_rows(scores, query.k, accept, skip=skip)
        evidence = _evidence(index, rows, query_sentences, sentence_vectors)
        return [
            Recommendation(
                publication_id=index.publications[row].id,
                title=index.publications[row].title,
                score=float(scores[row]),
                evidence=found,
                label=index.publications[row].label,
                year=index.publications[row].year,
            )
            for row, found in zip(rows, evidence, strict=True)
        ]


def _evidence(
    index: LexicalIndex, rows: list[int], query_sentences: list[str], query_vectors: sp.csr_array
) -> list[tuple[Evidence, ...]]:
    """Evidence of each recommended publication: one sparse product for all of them."""
    if not rows:
        return []
    spans = [index.sentence_rows(row) for row in rows]
    sentence_rows = np.concatenate([np.arange(start, end) for start, end in spans])
    similarity = (index.sentence_vectors[sentence_rows] @ query_vectors.T).toarray()
    evidence = []
    at = 0
    for start, end in spans:
        pairs = best_pairs(similarity[at : at + end - start], MAX_EVIDENCE)
        evidence.append(tuple(Evidence(query_sentences[q], index.sentences[start + s], c) for q, s, c in pairs))
        at += end - start
    return evidence


def _scores(index: LexicalIndex, query_vector: sp.csr_array) -> npt.NDArray[np.float32]:
    """Cosine of the query with every publication (both vectors are L2-normalised)."""
    dense = query_vector.toarray().ravel()
    scores: npt.NDArray[np.float32] = index.publication_vectors @ dense
    return scores
