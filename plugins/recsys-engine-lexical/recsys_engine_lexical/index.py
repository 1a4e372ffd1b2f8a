"""The lexical index: live segments combined into one TF-IDF collection.

Weights: a term's weight in a sentence or publication is ``(1 + ln tf) * idf``
(sublinear term frequency) with the smooth ``idf = ln((1 + N) / (1 + df)) + 1``,
``df`` counted over the N live publications; each vector is L2-normalised, so a dot
product is a cosine. A publication's counts are the sums of its sentences' counts
(title, abstract, full text). Queries are weighted by the same code.

The segments store ``1 + ln tf`` only (:mod:`recsys_engine_lexical.segment`). When an
index is made of them, the collection statistics are combined over the live
(not tombstoned) publications of every segment: the vocabulary (terms of at least one
live publication, sorted), the document frequencies, N, the idf and each publication's
vector norm. A query is scored as ``tf @ (q * idf) / norm`` per segment. Each
publication's score is computed from its own row with the same values, in the same
order (columns sorted by term in every segment; the products summed in float64 in that
order, from each segment's postings: its columns, kept in memory beside the rows, so a
query touches only the publications that hold one of its terms), so scores are exactly those of one
index built from scratch over the same publications, however they are segmented. Ties
go to the smaller publication id, which does not depend on segmentation either.

A first-wave index (one segment of final TF-IDF weights and its stored idf) is served
as it was: its vectors are used as they are.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsys_engine_lexical.segment import (
    BoolArray,
    FloatArray,
    IntArray,
    PublicationInfo,
    Segment,
    count_matrix,
)
from recsys_engine_lexical.tokenizer import Tokenizer

__all__ = ["LexicalIndex", "inverse_document_frequency"]


def inverse_document_frequency(document_frequency: IntArray, publications: int) -> FloatArray:
    """The smooth idf of each term: ``ln((1 + N) / (1 + df)) + 1``."""
    idf: FloatArray = np.log((1.0 + publications) / (1.0 + document_frequency.astype(np.float64))) + 1.0
    return idf


@dataclass(frozen=True)
class _Part:
    """A segment as the index uses it: where its rows start, which are live, how its
    columns map onto the index's (``to_global``; ``len(terms)`` for a term no live
    publication holds), each column's weight and each row's norm (0 when deleted)."""

    segment: Segment
    start: int
    live: BoolArray
    to_global: IntArray
    column_weights: FloatArray
    inverse_norms: FloatArray
    identity: bool  # to_global is 0, 1, 2, ...: the index's columns are the segment's
    publication_arrays: tuple[IntArray, IntArray, FloatArray]  # indptr, indices, data
    sentence_arrays: tuple[IntArray, IntArray, FloatArray]
    #: The publication matrix by column (CSC: indptr per local column, rows, data): the postings.
    postings: tuple[IntArray, IntArray, FloatArray]
    from_global: IntArray  # the local column of each index column, -1 where this segment has none


class LexicalIndex:
    """Everything the engine queries, over live segments. Read-only, so threads share it.

    Global rows are the segments' rows one after the other, tombstoned ones included
    (they score 0 and are never looked up by id); ``publications[row]`` and
    :meth:`row_of` work in those rows. Columns are the collection's ``terms``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        segments: Sequence[Segment],
        deleted: Mapping[str, IntArray] | None = None,
        *,
        idf: FloatArray | None = None,
    ) -> None:
        """``deleted``: the tombstoned rows of each segment id. ``idf``: the stored idf
        of a first-wave index (one weighted segment); otherwise it is computed."""
        deleted = deleted or {}
        self.tokenizer = tokenizer
        self.segments = tuple(segments)
        self.prescaled = idf is not None
        lives = []
        for segment in self.segments:
            live = np.ones(len(segment), dtype=bool)
            live[np.asarray(deleted.get(segment.id, ()), dtype=np.int64)] = False
            lives.append(live)
        self.publication_total = sum(int(live.sum()) for live in lives)
        terms, document_frequency = _vocabulary(self.segments, lives)
        self.terms: Sequence[str] = terms
        self.document_frequency = document_frequency
        self._term_ids = {term: column for column, term in enumerate(terms)}
        self.idf: FloatArray = idf if idf is not None else inverse_document_frequency(
            document_frequency, self.publication_total
        )
        column_weights = np.ones(len(terms) + 1) if self.prescaled else np.append(self.idf, 0.0)
        parts, start = [], 0
        for segment, live in zip(self.segments, lives, strict=True):
            if len(self.segments) == 1 and len(segment.terms) == len(terms):  # the same terms
                to_global = np.arange(len(terms), dtype=np.int64)
            else:
                to_global = np.fromiter(
                    (self._term_ids.get(t, len(terms)) for t in segment.terms), dtype=np.int64,
                    count=len(segment.terms),
                )
            weights = column_weights[to_global]
            norms = _row_norms(segment.publication_tf, weights)
            inverse = np.zeros(len(segment))
            np.divide(1.0, norms, out=inverse, where=live & (norms > 0))
            identity = len(to_global) == len(terms) and bool(np.array_equal(to_global, np.arange(len(terms))))
            from_global = np.full(len(terms) + 1, -1, dtype=np.int64)
            from_global[to_global] = np.arange(len(to_global))
            from_global[len(terms)] = -1  # where the segment's terms no live publication holds went
            columns = sp.csc_array(segment.publication_tf)
            parts.append(_Part(
                segment, start, live, to_global, weights, inverse, identity,
                _arrays(segment.publication_tf), _arrays(segment.sentence_tf),
                (np.asarray(columns.indptr), np.asarray(columns.indices), np.asarray(columns.data)), from_global,
            ))
            start += len(segment)
        self._parts = tuple(parts)
        self._starts = [part.start for part in parts]
        self.publications: Sequence[PublicationInfo] = [info for s in self.segments for info in s.publications]
        self._rows: dict[str, int] = {}
        for part in parts:
            infos = part.segment.publications
            self._rows.update((infos[row].id, part.start + row) for row in np.flatnonzero(part.live).tolist())
        ids = [info.id for info in self.publications]
        self.order = np.empty(len(ids), dtype=np.int64)
        self.order[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))

    @property
    def sentence_total(self) -> int:
        """Sentences of the live publications."""
        return sum(
            int(np.diff(part.segment.sentence_offsets)[part.live].sum()) for part in self._parts
        )

    def row_of(self, publication_id: str) -> int | None:
        """The global row of a live publication id, or None when the index does not hold it."""
        return self._rows.get(publication_id)

    def live_rows(self) -> dict[str, int]:
        """Every live publication id and its global row."""
        return dict(self._rows)

    def _locate(self, row: int) -> tuple[_Part, int]:
        part = self._parts[bisect.bisect_right(self._starts, row) - 1]
        return part, row - part.start

    def sentences_of(self, row: int) -> list[str]:
        part, local = self._locate(row)
        start, end = part.segment.sentence_rows(local)
        return [part.segment.sentences[i] for i in range(start, end)]

    def sentence(self, row: int, index: int) -> str:
        """Sentence ``index`` (0 = the title) of the publication at global ``row``."""
        part, local = self._locate(row)
        return part.segment.sentences[part.segment.sentence_rows(local)[0] + index]

    def vectorize(self, token_lists: Sequence[Sequence[str]]) -> sp.csr_array:
        """TF-IDF rows (float64, L2-normalised) of token lists; terms outside the vocabulary are ignored."""
        counts = count_matrix(token_lists, self._term_ids)
        data = 1.0 + np.log(counts.data.astype(np.float64))
        return _normalised(sp.csr_array((data, counts.indices, counts.indptr), shape=counts.shape), self.idf)

    def publication_vector(self, row: int) -> sp.csr_array:
        """The stored TF-IDF vector (1 x terms, float64, L2-normalised) of the publication at ``row``."""
        part, local = self._locate(row)
        return self._weighted([(part, local, local + 1)], sentences=False)

    def sentence_vectors(self, rows: Sequence[int]) -> tuple[sp.csr_array, list[int]]:
        """TF-IDF vectors of every sentence of the publications at ``rows`` (stacked, in
        order), and how many sentences each publication has."""
        pieces = []
        for row in rows:
            part, local = self._locate(row)
            pieces.append((part, *part.segment.sentence_rows(local)))
        return self._weighted(pieces, sentences=True), [end - start for _, start, end in pieces]

    def _weighted(self, pieces: Sequence[tuple[_Part, int, int]], *, sentences: bool) -> sp.csr_array:
        """Rows ``start:end`` of each part's sentence (or publication) matrix, one after the
        other, in the index's columns with TF-IDF weights, each row L2-normalised."""
        data, columns, weights, lengths = [], [], [], []
        for part, start, end in pieces:
            indptr, indices, values = part.sentence_arrays if sentences else part.publication_arrays
            first, last = indptr[start], indptr[end]
            local = indices[first:last]
            columns.append(part.to_global[local])
            weights.append(part.column_weights[local])
            data.append(values[first:last])
            lengths.append(np.diff(indptr[start : end + 1]))
        if not pieces:
            return sp.csr_array((0, len(self.terms)))
        row_lengths = np.concatenate(lengths)
        n_rows = len(row_lengths)
        weighted = np.concatenate(data).astype(np.float64) * np.concatenate(weights)
        row_of_entry = np.repeat(np.arange(n_rows), row_lengths)
        norms = np.sqrt(np.bincount(row_of_entry, weights=weighted * weighted, minlength=n_rows))
        if weighted.size:
            weighted /= norms[row_of_entry]
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(row_lengths, out=indptr[1:])
        return sp.csr_array((weighted, np.concatenate(columns), indptr), shape=(n_rows, len(self.terms)))

    def scores(self, query: sp.csr_array) -> npt.NDArray[np.float64]:
        """The cosine of one query vector (1 x terms) with every global row (0 for tombstoned rows).

        Only the postings of the query's terms are read: the cost follows how many
        publications hold them, not the size of the collection."""
        columns = np.asarray(query.indices, dtype=np.int64)
        order = np.argsort(columns, kind="stable")
        columns = columns[order]
        values = np.asarray(query.data, dtype=np.float64)[order]
        if not self.prescaled:
            values = values * self.idf[columns]
        out = np.empty(len(self.publications))
        for part in self._parts:
            local = columns if part.identity else part.from_global[columns]
            held = local >= 0
            raw = _postings_product(part.postings, local[held], values[held], len(part.segment))
            np.multiply(raw, part.inverse_norms, out=out[part.start : part.start + len(part.segment)])
        return out


def _postings_product(postings: tuple[IntArray, IntArray, FloatArray], columns: IntArray, weights: FloatArray,
                      rows: int) -> FloatArray:
    """``matrix @ q`` for a sparse ``q`` (``columns`` ascending, ``weights``), from the
    matrix's columns: each row's products summed in float64 in column order."""
    indptr, row_of, data = postings
    starts = indptr[columns]
    lengths = indptr[columns + 1] - starts
    total = int(lengths.sum())
    if not total:
        return np.zeros(rows)
    entries = np.arange(total) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    products = data[entries].astype(np.float64) * np.repeat(weights, lengths)
    return np.bincount(row_of[entries], weights=products, minlength=rows).astype(np.float64, copy=False)


def _arrays(matrix: sp.csr_array) -> tuple[IntArray, IntArray, FloatArray]:
    """A CSR matrix's indptr, indices and data, as plain arrays (fast to slice; still the maps)."""
    return np.asarray(matrix.indptr), np.asarray(matrix.indices), np.asarray(matrix.data)


def _vocabulary(segments: Sequence[Segment], lives: Sequence[BoolArray]) -> tuple[list[str], IntArray]:
    """The sorted terms of at least one live publication, and their live document frequencies."""
    frequencies: dict[str, int] = {}
    for segment, live in zip(segments, lives, strict=True):
        df = np.asarray(segment.document_frequency, dtype=np.int64)
        if not live.all():
            gone = segment.publication_tf[np.flatnonzero(~live)]
            df = df - np.bincount(gone.indices, minlength=len(segment.terms))
        if len(segments) == 1 and df.all():  # the usual case of one fresh segment: its terms as they are
            return list(segment.terms), df
        for term, count in zip(segment.terms, df.tolist(), strict=True):
            if count:
                frequencies[term] = frequencies.get(term, 0) + count
    terms = sorted(frequencies)
    return terms, np.fromiter((frequencies[t] for t in terms), dtype=np.int64, count=len(terms))


def _row_norms(matrix: sp.csr_array, column_weights: FloatArray) -> FloatArray:
    """L2 norm of each row of ``matrix`` with column ``c`` scaled by ``column_weights[c]``."""
    n_rows = matrix.shape[0]
    weights = np.asarray(matrix.data, dtype=np.float64) * column_weights[matrix.indices]
    row_of_entry = np.repeat(np.arange(n_rows), np.diff(matrix.indptr))
    norms: FloatArray = np.sqrt(np.bincount(row_of_entry, weights=weights * weights, minlength=n_rows))
    return norms


def _normalised(matrix: sp.csr_array, column_weights: FloatArray | None) -> sp.csr_array:
    """``matrix`` with columns scaled by ``column_weights`` (if given), each row L2-normalised."""
    data = np.asarray(matrix.data, dtype=np.float64)
    if column_weights is not None:
        data = data * column_weights[matrix.indices]
    n_rows = matrix.shape[0]
    row_of_entry = np.repeat(np.arange(n_rows), np.diff(matrix.indptr))
    norms = np.sqrt(np.bincount(row_of_entry, weights=data * data, minlength=n_rows))
    if data.size:
        data = data / norms[row_of_entry]
    return sp.csr_array((data, np.asarray(matrix.indices), np.asarray(matrix.indptr)), shape=matrix.shape)
