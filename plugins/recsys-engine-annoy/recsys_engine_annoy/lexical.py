"""The lexical half of the hybrid score: TF-IDF over the engine's own sentences.

Every segment has a lexical part: the term counts (``1 + ln tf``) of each of its
publications over the segment's sorted vocabulary, with the segment's document
frequencies, built by the lexical plugin's code (:func:`recsys_engine_lexical.segment.
sentence_segment`) from the segment's stored sentences. The parts of all live segments
make one :class:`recsys_engine_lexical.index.LexicalIndex`, which combines the document
frequencies over the live publications, so the lexical score of a publication is the
lexical engine's: the cosine of the query's and the publication's TF-IDF vectors, on
0–1, whatever the segmentation.

Files, written next to the segment's own and, like them, never changed (a kept segment's
are hard-linked with the rest)::

    lexical.vocabulary.json                      the segment's terms, sorted
    lexical.document_frequency.npy               int64 [terms]
    lexical.publication_tf.{data,indices,indptr}.npy   CSR [publications x terms], float32

A segment written before the hybrid engine has none: its part is built in memory when
the engine is loaded (logged), and the next build that keeps it writes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.errors import EngineLoadError
from recsys_engine_annoy.segments import Segment
from recsys_engine_lexical.files import array, matrix, read_json, write_json
from recsys_engine_lexical.index import LexicalIndex
from recsys_engine_lexical.segment import PublicationInfo, sentence_segment
from recsys_engine_lexical.segment import Segment as LexicalSegment
from recsys_engine_lexical.tokenizer import Tokenizer

__all__ = ["PREFIX", "TOKENIZER", "LexicalSignal", "has_files", "lexical_part", "matched_terms", "write_part"]

logger = logging.getLogger(__name__)

#: The lexical engine's default tokenizer (stopwords, plural folding).
TOKENIZER = Tokenizer()
#: The names of a segment's lexical files start with this.
PREFIX = "lexical."
_VOCABULARY = PREFIX + "vocabulary.json"
_FREQUENCY = PREFIX + "document_frequency.npy"
_TF = PREFIX + "publication_tf"


def _infos(segment: Segment) -> list[PublicationInfo]:
    records = segment.records
    return [PublicationInfo(records.ids[r], records.titles[r], records.labels[r], records.years[r])
            for r in range(len(records))]


def lexical_part(segment: Segment) -> LexicalSegment:
    """The segment's lexical part: read from its files, or built from its sentences."""
    infos = _infos(segment)
    if segment.source is not None and has_files(segment.source):
        folder = segment.source
        terms = read_json(folder, _VOCABULARY)
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise EngineLoadError(f"{folder / _VOCABULARY} must be a JSON list of strings: rebuild the engine")
        return LexicalSegment(
            id=segment.id, publications=infos, fingerprints=np.zeros((len(infos), 32), dtype=np.uint8),
            terms=terms, document_frequency=array(folder, _FREQUENCY, (len(terms),), "i"),
            publication_tf=matrix(folder, _TF, (len(infos), len(terms))),
            sentence_tf=sp.csr_array((segment.sentences, len(terms)), dtype=np.float32),
            sentence_offsets=np.asarray(segment.starts, dtype=np.int64), sentences=segment.texts, folder=folder,
        )
    started = time.monotonic()
    built = sentence_segment(segment.id, infos, segment.texts, segment.starts, TOKENIZER)
    if segment.source is not None:
        logger.info("segment %s has no lexical files (written before the hybrid engine): tokenized its %d "
                    "sentences in %.1f s; the next build writes them", segment.id, segment.sentences,
                    time.monotonic() - started)
    # the sentences' own counts are not kept: evidence terms are found by tokenizing the pair
    return LexicalSegment(
        id=built.id, publications=infos, fingerprints=built.fingerprints, terms=built.terms,
        document_frequency=built.document_frequency, publication_tf=built.publication_tf,
        sentence_tf=sp.csr_array((segment.sentences, len(built.terms)), dtype=np.float32),
        sentence_offsets=built.sentence_offsets, sentences=segment.texts,
    )


def write_part(part: LexicalSegment, folder: Path) -> None:
    """Write the lexical files of a segment into its (new) folder."""
    write_json(folder / _VOCABULARY, list(part.terms))
    np.save(folder / _FREQUENCY, np.asarray(part.document_frequency, np.int64), allow_pickle=False)
    tf = part.publication_tf
    index_type = np.int32 if max(tf.nnz, tf.shape[1]) < 2**31 else np.int64
    np.save(folder / f"{_TF}.data.npy", np.asarray(tf.data, np.float32), allow_pickle=False)
    np.save(folder / f"{_TF}.indices.npy", np.asarray(tf.indices).astype(index_type), allow_pickle=False)
    np.save(folder / f"{_TF}.indptr.npy", np.asarray(tf.indptr).astype(index_type), allow_pickle=False)


def has_files(folder: Path) -> bool:
    return (folder / _VOCABULARY).is_file()


class LexicalSignal:
    """The lexical scores of a query against every global row of the engine (the rows
    of its segments one after the other, tombstoned ones scoring 0)."""

    def __init__(self, segments: Sequence[Segment], deleted: Sequence[NDArray[np.int64]]) -> None:
        self.parts = {s.id: lexical_part(s) for s in segments}
        self.index = LexicalIndex(TOKENIZER, [self.parts[s.id] for s in segments],
                                  {s.id: rows for s, rows in zip(segments, deleted, strict=True)})

    def text_scores(self, text: str) -> NDArray[np.float64] | None:
        """Cosine of ``text``'s TF-IDF vector with every row; None when none of its words is indexed."""
        vector = self.index.vectorize([TOKENIZER(text)])
        if vector.nnz == 0:
            return None
        return self.index.scores(vector)

    def row_scores(self, row: int) -> NDArray[np.float64] | None:
        """Cosine of the publication at global ``row`` with every row (a by-id query)."""
        vector = self.index.publication_vector(row)
        if vector.nnz == 0:
            return None
        return self.index.scores(vector)


def matched_terms(query_sentence: str, sentence: str) -> tuple[str, ...]:
    """The index terms the two sentences share, in the query sentence's order."""
    stored = set(TOKENIZER(sentence))
    return tuple(dict.fromkeys(t for t in TOKENIZER(query_sentence) if t in stored))
