"""The lexical index: TF-IDF vectors of every sentence and every publication.

Weights: a term's weight in a sentence or publication is ``(1 + ln tf) * idf``
(sublinear term frequency) with the smooth ``idf = ln((1 + N) / (1 + df)) + 1``,
``df`` counted over the N publications; each vector is L2-normalised, so a dot
product is a cosine. A publication's counts are the sums of its sentences'
counts (title, abstract, full text). Queries are weighted by the same code.

All arrays are plain numpy: float32 weights, int32 (or int64 when large) CSR
indices, float64 idf. After :func:`build_index` they live in memory; after
:func:`recsys_engine_lexical.files.load_index` they are memory-mapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsys.domain import Publication
from recsys.engine import NULL_PROGRESS, Progress
from recsys.errors import SourceError
from recsys.text import split_sentences
from recsys_engine_lexical.tokenizer import Tokenizer

__all__ = ["LexicalIndex", "PublicationInfo", "SentenceTexts", "build_index", "publication_sentences"]

#: How often (in publications) fit reports its "split" progress.
PROGRESS_EVERY = 1000

FloatArray = npt.NDArray[np.floating]
IntArray = npt.NDArray[np.integer]


class SentenceTexts(Protocol):
    """Sentence texts by row number (a list in memory, or a memory-mapped file)."""

    def __len__(self) -> int: ...

    def __getitem__(self, row: int) -> str: ...


@dataclass(frozen=True)
class PublicationInfo:
    """What a recommendation and the filters need of a publication."""

    id: str
    title: str
    label: str | None
    year: int | None


class LexicalIndex:
    """Everything the engine queries. Read-only once built, so threads share it.

    Row ``p`` of ``publication_vectors`` is publication ``publications[p]``; its
    sentences are rows ``sentence_offsets[p]:sentence_offsets[p + 1]`` of
    ``sentence_vectors`` and of ``sentences``. Column ``t`` is term ``terms[t]``.
    """

    def __init__(
        self,
        *,
        tokenizer: Tokenizer,
        terms: Sequence[str],
        idf: FloatArray,
        publications: Sequence[PublicationInfo],
        publication_vectors: sp.csr_array,
        sentence_vectors: sp.csr_array,
        sentence_offsets: IntArray,
        sentences: SentenceTexts,
    ) -> None:
        self.tokenizer = tokenizer
        self.terms = terms
        self.idf = idf
        self.publications = publications
        self.publication_vectors = publication_vectors
        self.sentence_vectors = sentence_vectors
        self.sentence_offsets = sentence_offsets
        self.sentences = sentences
        self._term_ids = {term: column for column, term in enumerate(terms)}
        self._rows = {pub.id: row for row, pub in enumerate(publications)}

    def row_of(self, publication_id: str) -> int | None:
        """The row of a publication id, or None when the index does not hold it."""
        return self._rows.get(publication_id)

    def sentence_rows(self, row: int) -> tuple[int, int]:
        """First and one-past-last sentence row of publication ``row``."""
        return int(self.sentence_offsets[row]), int(self.sentence_offsets[row + 1])

    def vectorize(self, token_lists: Sequence[Sequence[str]]) -> sp.csr_array:
        """TF-IDF rows (L2-normalised) of token lists; terms outside the vocabulary are ignored."""
        return weigh(count_matrix(token_lists, self._term_ids), self.idf)


def publication_sentences(publication: Publication) -> list[str]:
    """The title as one sentence, then the sentences of the abstract and of the full text,
    each with its whitespace collapsed to single spaces."""
    sentences = [publication.title]
    sentences += split_sentences(publication.abstract)
    if publication.text:
        sentences += split_sentences(publication.text)
    return [normalised for normalised in (" ".join(s.split()) for s in sentences) if normalised]


def count_matrix(token_lists: Sequence[Sequence[str]], term_ids: dict[str, int]) -> sp.csr_array:
    """Term counts (float32), one row per token list, sorted indices, no duplicates."""
    lengths = np.fromiter((len(tokens) for tokens in token_lists), dtype=np.int64, count=len(token_lists))
    rows = np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths)
    lookup = term_ids.get
    columns = np.fromiter((lookup(t, -1) for tokens in token_lists for t in tokens), dtype=np.int64, count=len(rows))
    known = columns >= 0
    rows, columns = rows[known], columns[known]
    counts = sp.csr_array(
        (np.ones(len(rows), dtype=np.float32), (rows, columns)),
        shape=(len(token_lists), len(term_ids)),
    )
    counts.sum_duplicates()
    counts.sort_indices()
    return counts


def weigh(counts: sp.csr_array, idf: FloatArray) -> sp.csr_array:
    """``(1 + ln tf) * idf`` per entry, each row L2-normalised (all-zero rows stay zero)."""
    n_rows = counts.shape[0]
    weights = (1.0 + np.log(counts.data.astype(np.float64))) * idf[counts.indices]
    row_of_entry = np.repeat(np.arange(n_rows), np.diff(counts.indptr))
    norms = np.sqrt(np.bincount(row_of_entry, weights=weights * weights, minlength=n_rows))
    if weights.size:
        weights /= norms[row_of_entry]
    return sp.csr_array(
        (weights.astype(np.float32), counts.indices.copy(), counts.indptr.copy()), shape=counts.shape
    )


def inverse_document_frequency(publication_counts: sp.csr_array) -> FloatArray:
    n_publications, n_terms = publication_counts.shape
    document_frequency = np.bincount(publication_counts.indices, minlength=n_terms)
    idf: FloatArray = np.log((1.0 + n_publications) / (1.0 + document_frequency)) + 1.0
    return idf


def build_index(
    publications: Sequence[Publication], tokenizer: Tokenizer, progress: Progress = NULL_PROGRESS
) -> LexicalIndex:
    """Tokenize every sentence of every publication and weigh the vectors.

    Raises SourceError for an empty corpus or a duplicate publication id.
    """
    if not publications:
        raise SourceError("cannot build the lexical engine from no publications: give at least one")
    seen: set[str] = set()
    infos: list[PublicationInfo] = []
    sentences: list[str] = []
    tokens: list[list[str]] = []
    offsets = [0]
    memo = tokenizer.memo()
    for done, pub in enumerate(publications, start=1):
        if pub.id in seen:
            raise SourceError(f"publication id {pub.id!r} appears twice; give each publication once")
        seen.add(pub.id)
        infos.append(PublicationInfo(pub.id, pub.title, pub.label, pub.year))
        own = publication_sentences(pub)
        sentences.extend(own)
        tokens.extend(tokenizer(s, memo) for s in own)
        offsets.append(len(sentences))
        if done % PROGRESS_EVERY == 0 or done == len(publications):
            progress("split", done, len(publications))

    steps = 3
    progress("index", 0, steps)
    terms = sorted({term for sentence in tokens for term in sentence})
    sentence_counts = count_matrix(tokens, {term: column for column, term in enumerate(terms)})
    progress("index", 1, steps)
    sentence_offsets = np.asarray(offsets, dtype=np.int64)
    n_sentences = len(sentences)
    membership = sp.csr_array(
        (np.ones(n_sentences, dtype=np.float32), np.arange(n_sentences), sentence_offsets),
        shape=(len(infos), n_sentences),
    )
    publication_counts = sp.csr_array(membership @ sentence_counts)
    publication_counts.sum_duplicates()
    publication_counts.sort_indices()
    idf = inverse_document_frequency(publication_counts)
    progress("index", 2, steps)
    index = LexicalIndex(
        tokenizer=tokenizer,
        terms=terms,
        idf=idf,
        publications=infos,
        publication_vectors=weigh(publication_counts, idf),
        sentence_vectors=weigh(sentence_counts, idf),
        sentence_offsets=sentence_offsets,
        sentences=sentences,
    )
    progress("index", steps, steps)
    return index
