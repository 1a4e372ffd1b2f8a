"""LexicalEngine: TF-IDF over sentences, exact cosine scoring with scipy sparse, in segments.

Ranking: the cosine between the query's TF-IDF vector (all its words) and each
publication's TF-IDF vector (all words of its title, abstract and full text),
computed for every live publication of every segment, so filters are exact:
``Query.accepts`` is applied in score order until ``k`` publications pass. Only
publications sharing at least one term with the query (score > 0) are returned, so a
text of unknown words gives an empty list. Ties go to the smaller publication id.

Evidence: for each query sentence, the best-matching sentence of the recommended
publication by the cosine of their own TF-IDF vectors; the :data:`MAX_EVIDENCE` best
pairs are kept. A by-id query uses the publication's own vector as the query and its
sentences as the query sentences.

Builds are incremental when ``previous`` holds a segmented lexical engine with the
same tokenizer (:mod:`recsys_engine_lexical.delta`); the collection statistics are
combined over the segments when the index is made (:mod:`recsys_engine_lexical.index`),
so the scores are those of one index built from scratch.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsys import refine
from recsys.config import Settings
from recsys.domain import Evidence, Example, Publication, Query, Recommendation
from recsys.engine import NULL_PROGRESS, Engine, EngineMetadata, Progress
from recsys.errors import RecsysError, SourceError, UnknownPublication
from recsys.text import split_sentences
from recsys_engine_lexical.delta import build_segments
from recsys_engine_lexical.files import FORMAT, STATE, Folder, load_folder, read_config, read_json, save_folder
from recsys_engine_lexical.firstwave import FIRST_WAVE_FILES
from recsys_engine_lexical.index import LexicalIndex
from recsys_engine_lexical.merging import MergePolicy
from recsys_engine_lexical.ranking import best_pairs, top_rows
from recsys_engine_lexical.segment import IntArray
from recsys_engine_lexical.tokenizer import Tokenizer

__all__ = ["MAX_EVIDENCE", "LexicalEngine"]

#: Evidence pairs kept per recommendation, best first.
MAX_EVIDENCE = 3

logger = logging.getLogger(__name__)


class LexicalEngine(Engine):
    """TF-IDF engine over sentences (no torch). See the module docstring for scoring.

    ``stemming`` (default on) folds English plurals; it is stored with the index,
    so a loaded engine tokenizes queries as its build did. ``merge_policy``: when
    incremental builds rewrite segments (default :class:`MergePolicy()`).
    """

    name: ClassVar[str] = "lexical"
    supports_delta: ClassVar[bool] = True

    def __init__(
        self, settings: Settings | None = None, *, stemming: bool = True, merge_policy: MergePolicy | None = None
    ) -> None:
        super().__init__(settings)
        self._tokenizer = Tokenizer(stemming=stemming)
        self._policy = merge_policy if merge_policy is not None else MergePolicy()
        self._index: LexicalIndex | None = None
        self._deleted: dict[str, IntArray] = {}
        self._next_number = 1
        self._report: dict[str, Any] = {}
        self._first_wave: Path | None = None

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
        """Build from every publication; incremental when ``previous`` holds a segmented
        lexical engine with the same tokenizer (else a full build, and the log says why)."""
        started = time.monotonic()
        if not publications:
            raise SourceError("cannot build the lexical engine from no publications: give at least one")
        seen: set[str] = set()
        for pub in publications:
            if pub.id in seen:
                raise SourceError(f"publication id {pub.id!r} appears twice; give each publication once")
            seen.add(pub.id)
        prior, why = self._prior(previous)
        if previous is not None and prior is None:
            logger.info("lexical: full build, not incremental: %s", why)
        build = build_segments(
            publications, self._tokenizer, self._policy, prior,
            next_number=_next_number(previous) if prior is None else 1, progress=progress,
        )
        self._index = LexicalIndex(self._tokenizer, build.segments, build.deleted)
        self._deleted, self._next_number, self._report = build.deleted, build.next_number, build.report
        self._first_wave = None
        report, index = build.report, self._index
        logger.info(
            "lexical: %d publications (%d added, %d replaced, %d removed), %d sentences, %d terms; "
            "%d segments (kept %s, written %s), %d tombstones, merged %s, in %.1fs",
            index.publication_total, report["added"], report["replaced"], report["removed"], index.sentence_total,
            len(index.terms), report["count"], report["kept"], report["written"], report["tombstones"],
            report["merged"], time.monotonic() - started,
        )

    def _prior(self, previous: Path | None) -> tuple[Folder | None, str]:
        """The segmented engine in ``previous`` to build on, or None and the reason."""
        if previous is None:
            return None, "no previous engine"
        try:
            found, tokenizer = read_config(previous)
            if found != FORMAT:
                return None, f"{previous} holds a first-wave lexical engine (format {found})"
            if tokenizer != self._tokenizer:
                return None, f"{previous} was built with other tokenizer settings"
            return load_folder(previous), ""
        except RecsysError as exc:
            return None, f"{previous} cannot be read as a lexical engine ({exc})"

    def save(self, folder: Path) -> EngineMetadata:
        index = self.index
        if self._first_wave is not None:
            for name in FIRST_WAVE_FILES:
                shutil.copyfile(self._first_wave / name, folder / name)
        else:
            save_folder(
                folder, index.tokenizer, index.segments, self._deleted, next_number=self._next_number,
                totals={"publications": index.publication_total, "sentences": index.sentence_total,
                        "terms": len(index.terms)},
                build=self._report,
            )
        return EngineMetadata(
            publications=index.publication_total,
            sentences=index.sentence_total,
            extra={
                "terms": len(index.terms), "stemming": index.tokenizer.stemming, "weighting": "tfidf",
                "segments": self._report,
            },
        )

    @classmethod
    def load(cls, folder: Path, settings: Settings | None = None) -> LexicalEngine:
        loaded = load_folder(folder)
        engine = cls(settings, stemming=loaded.tokenizer.stemming)
        engine._tokenizer = loaded.tokenizer
        engine._index = LexicalIndex(loaded.tokenizer, loaded.segments, loaded.deleted, idf=loaded.idf)
        engine._deleted, engine._next_number = loaded.deleted, loaded.next_number
        engine._first_wave = folder if loaded.idf is not None else None
        tombstones = sum(len(rows) for rows in loaded.deleted.values())
        engine._report = {
            "count": len(loaded.segments), "publications": engine._index.publication_total, "tombstones": tombstones,
            "incremental": False, "kept": [s.id for s in loaded.segments], "written": [], "merged": [],
        }
        return engine

    @property
    def publication_count(self) -> int:
        return self.index.publication_total

    def close(self) -> None:
        """Drop the index; its memory maps close once no query still uses them."""
        self._index = None

    def recommend(self, query: Query) -> list[Recommendation]:
        index = self.index  # one reference for the whole query, even if close() runs meanwhile
        if query.like:
            liked = [self._example(index, e) for e in query.like]
            unliked = [self._example(index, e) for e in query.unlike]
            query_vector = _combined([v for _, v, _ in liked], [v for _, v, _ in unliked])
            query_sentences = [s for sentences, _, _ in liked for s in sentences]
            sentence_vectors = sp.vstack([vectors for _, _, vectors in liked], format="csr")
        else:
            example = Example(text=query.text, publication_id=query.publication_id)
            query_sentences, query_vector, sentence_vectors = self._example(index, example)
            if query.unlike:
                unliked = [self._example(index, e)[1] for e in query.unlike]
                query_vector = _combined([query_vector], unliked)
        scores = index.scores(query_vector)

        def accept(row: int) -> bool:
            pub = index.publications[row]
            return query.accepts(pub.id, pub.label, pub.year)

        skip = len(query.hidden_ids) + (query.publication_id is not None)
        rows = top_rows(scores, refine.pool(query), accept, skip=skip, order=index.order)
        if not query.is_plain:

            def similarity(positions: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
                vectors = sp.vstack([index.publication_vector(rows[int(p)]) for p in positions], format="csr")
                return np.asarray((vectors @ vectors.T).toarray(), dtype=np.float64)

            chosen = refine.select(scores[np.asarray(rows, dtype=np.int64)], query, similarity)
            rows = [rows[p] for p in chosen]
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

    @staticmethod
    def _example(index: LexicalIndex, example: Example) -> tuple[list[str], sp.csr_array, sp.csr_array]:
        """An example's sentences, its TF-IDF vector (1 x terms) and its sentences' vectors."""
        if example.publication_id is not None:
            row = index.row_of(example.publication_id)
            if row is None:
                raise UnknownPublication(
                    f"publication {example.publication_id!r} is not in this engine "
                    f"({index.publication_total} publications); check the id or rebuild the engine"
                )
            return index.sentences_of(row), index.publication_vector(row), index.sentence_vectors([row])[0]
        assert example.text is not None  # an Example holds a text or a publication id
        sentences = split_sentences(example.text) or [example.text]
        tokens = [index.tokenizer(s) for s in sentences]
        # Row 0: the whole text; rows 1..: its sentences (one vectorize call).
        vectors = index.vectorize([[t for sentence in tokens for t in sentence], *tokens])
        return sentences, vectors[[0]], vectors[1:]


def _combined(liked: list[sp.csr_array], unliked: list[sp.csr_array]) -> sp.csr_array:
    """Rocchio: the mean of the liked vectors less UNLIKE_WEIGHT times the mean of the
    unliked ones, negative weights dropped, L2-normalised (1 x terms)."""
    total = sum(liked[1:], liked[0]) / len(liked)
    if unliked:
        total = total - (refine.UNLIKE_WEIGHT / len(unliked)) * sum(unliked[1:], unliked[0])
    vector = sp.csr_array(total)
    vector.data = np.maximum(vector.data, 0.0)
    vector.eliminate_zeros()
    norm = float(np.sqrt(vector.multiply(vector).sum()))
    return sp.csr_array(vector / norm) if norm > 0 else vector


def _next_number(previous: Path | None) -> int:
    """The next segment number of ``previous`` (so a full build's ids never reuse its ids), else 1."""
    if previous is None:
        return 1
    try:
        state = read_json(previous, STATE)
    except RecsysError:
        return 1
    found = state.get("next") if isinstance(state, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) and found > 0 else 1


def _evidence(
    index: LexicalIndex, rows: list[int], query_sentences: list[str], query_vectors: sp.csr_array
) -> list[tuple[Evidence, ...]]:
    """Evidence of each recommended publication: one sparse product for all of them."""
    if not rows:
        return []
    vectors, counts = index.sentence_vectors(rows)
    similarity = (vectors @ query_vectors.T).toarray()
    evidence = []
    at = 0
    for row, count in zip(rows, counts, strict=True):
        pairs = best_pairs(similarity[at : at + count], MAX_EVIDENCE)
        evidence.append(tuple(Evidence(query_sentences[q], index.sentence(row, s), c) for q, s, c in pairs))
        at += count
    return evidence
