"""Segments: immutable term-count matrices of a group of publications.

A segment holds what does not depend on the rest of the corpus: per publication its
info, a content fingerprint and its sublinear term frequencies ``1 + ln tf`` (of the
publication and of each of its sentences), over the segment's own sorted vocabulary,
with the document frequency of each term within the segment. The idf, and with it the
TF-IDF weights and vector norms, are combined over the live publications of all
segments when an index is made of them (:class:`recsys_engine_lexical.index.LexicalIndex`),
so that a segment's files never change once written.

:func:`build_segment` tokenizes publications; :func:`merge_segments` joins the live
publications of several segments by remapping their stored rows (nothing is tokenized
again). Both give the same segment for the same publications in the same order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsys.domain import Publication
from recsys.engine import NULL_PROGRESS, Progress
from recsys.text import split_sentences
from recsys_engine_lexical.tokenizer import Tokenizer

__all__ = [
    "FINGERPRINT_BYTES",
    "PublicationInfo",
    "Segment",
    "SentenceTexts",
    "build_segment",
    "count_matrix",
    "fingerprint",
    "merge_segments",
    "publication_sentences",
    "ranges",
    "segment_id",
    "sentence_segment",
]

#: How often (in publications) a build reports its "split" progress.
PROGRESS_EVERY = 1000

#: Bytes of a publication's content fingerprint (a sha256).
FINGERPRINT_BYTES = 32

FloatArray = npt.NDArray[np.floating]
IntArray = npt.NDArray[np.integer]
BoolArray = npt.NDArray[np.bool_]


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


@dataclass(frozen=True)
class Segment:
    """One segment, in memory or memory-mapped from ``folder``. Read-only.

    Row ``p`` of ``publication_tf`` is ``publications[p]``; its sentences are rows
    ``sentence_offsets[p]:sentence_offsets[p + 1]`` of ``sentence_tf`` and
    ``sentences``. Column ``t`` is ``terms[t]`` (sorted). ``weighted``: a first-wave
    index read as one segment, whose matrices hold final TF-IDF weights (with the
    stored idf) instead of ``1 + ln tf``; it has no fingerprints.
    """

    id: str
    publications: Sequence[PublicationInfo]
    fingerprints: npt.NDArray[np.uint8]
    terms: Sequence[str]
    document_frequency: IntArray
    publication_tf: sp.csr_array
    sentence_tf: sp.csr_array
    sentence_offsets: IntArray
    sentences: SentenceTexts
    folder: Path | None = None
    weighted: bool = False

    def __len__(self) -> int:
        return len(self.publications)

    @property
    def sentence_count(self) -> int:
        return int(self.sentence_offsets[-1])

    def sentence_rows(self, row: int) -> tuple[int, int]:
        """First and one-past-last sentence row of publication ``row``."""
        return int(self.sentence_offsets[row]), int(self.sentence_offsets[row + 1])


def segment_id(number: int) -> str:
    """The id of the ``number``-th segment of an engine's history: ``s000007``."""
    return f"s{number:06d}"


def publication_sentences(publication: Publication) -> list[str]:
    """The title as one sentence, then the sentences of the abstract and of the full text,
    each with its whitespace collapsed to single spaces."""
    sentences = [publication.title]
    sentences += split_sentences(publication.abstract)
    if publication.text:
        sentences += split_sentences(publication.text)
    return [normalised for normalised in (" ".join(s.split()) for s in sentences) if normalised]


def fingerprint(publication: Publication) -> bytes:
    """sha256 of a canonical JSON of the fields the engine indexes or stores."""
    fields = {
        "id": publication.id, "title": publication.title, "abstract": publication.abstract,
        "text": publication.text, "label": publication.label, "year": publication.year,
    }
    canonical = json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def count_matrix(token_lists: Sequence[Sequence[str]], term_ids: dict[str, int]) -> sp.csr_array:
    """Term counts (float32), one row per token list, sorted indices, no duplicates;
    terms outside ``term_ids`` are ignored."""
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


def _sublinear(counts: sp.csr_array) -> sp.csr_array:
    """``1 + ln tf`` of every stored count, as float32."""
    data = (1.0 + np.log(counts.data.astype(np.float64))).astype(np.float32)
    return sp.csr_array((data, counts.indices, counts.indptr), shape=counts.shape)


def build_segment(
    number: int, publications: Sequence[Publication], tokenizer: Tokenizer, progress: Progress = NULL_PROGRESS
) -> Segment:
    """Tokenize every sentence of ``publications`` (ids already checked unique) into segment ``number``."""
    infos: list[PublicationInfo] = []
    sentences: list[str] = []
    tokens: list[list[str]] = []
    offsets = [0]
    memo = tokenizer.memo()
    for done, pub in enumerate(publications, start=1):
        infos.append(PublicationInfo(pub.id, pub.title, pub.label, pub.year))
        own = publication_sentences(pub)
        sentences.extend(own)
        tokens.extend(tokenizer(s, memo) for s in own)
        offsets.append(len(sentences))
        if done % PROGRESS_EVERY == 0 or done == len(publications):
            progress("split", done, len(publications))
    return _counted_segment(
        segment_id(number), infos, _fingerprints(fingerprint(p) for p in publications), sentences, tokens,
        np.asarray(offsets, dtype=np.int64), progress,
    )


def sentence_segment(
    id: str, infos: Sequence[PublicationInfo], sentences: SentenceTexts, offsets: IntArray,  # noqa: A002
    tokenizer: Tokenizer,
) -> Segment:
    """A segment of already split publications: ``infos[p]``'s sentences are
    ``sentences[offsets[p]:offsets[p + 1]]`` (another engine's stored sentences, e.g. the
    default engine's hybrid part). It has no fingerprints (all zero)."""
    memo = tokenizer.memo()
    tokens = [tokenizer(sentences[i], memo) for i in range(len(sentences))]
    fingerprints = np.zeros((len(infos), FINGERPRINT_BYTES), dtype=np.uint8)
    return _counted_segment(id, infos, fingerprints, sentences, tokens, np.asarray(offsets, dtype=np.int64))


def _counted_segment(
    id: str, infos: Sequence[PublicationInfo], fingerprints: npt.NDArray[np.uint8],  # noqa: A002
    sentences: SentenceTexts, tokens: Sequence[Sequence[str]], sentence_offsets: IntArray,
    progress: Progress = NULL_PROGRESS,
) -> Segment:
    steps = 3
    progress("index", 0, steps)
    terms = sorted({term for sentence in tokens for term in sentence})
    sentence_counts = count_matrix(tokens, {term: column for column, term in enumerate(terms)})
    progress("index", 1, steps)
    n_sentences = len(sentences)
    membership = sp.csr_array(
        (np.ones(n_sentences, dtype=np.float32), np.arange(n_sentences), sentence_offsets),
        shape=(len(infos), n_sentences),
    )
    publication_counts = sp.csr_array(membership @ sentence_counts)
    publication_counts.sum_duplicates()
    publication_counts.sort_indices()
    progress("index", 2, steps)
    segment = Segment(
        id=id,
        publications=infos,
        fingerprints=fingerprints,
        terms=terms,
        document_frequency=np.bincount(publication_counts.indices, minlength=len(terms)).astype(np.int64),
        publication_tf=_sublinear(publication_counts),
        sentence_tf=_sublinear(sentence_counts),
        sentence_offsets=sentence_offsets,
        sentences=sentences,
    )
    progress("index", steps, steps)
    return segment


def _fingerprints(digests: Iterable[bytes]) -> npt.NDArray[np.uint8]:
    joined = b"".join(digests)
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, FINGERPRINT_BYTES).copy()


def merge_segments(number: int, parts: Sequence[tuple[Segment, BoolArray]]) -> Segment:
    """Segment ``number`` made of the live rows (``mask`` True) of each ``(segment, mask)``,
    in order: rows are copied and their columns remapped onto the union of the live
    rows' terms; nothing is tokenized again."""
    infos: list[PublicationInfo] = []
    fingerprints: list[npt.NDArray[np.uint8]] = []
    publication_parts: list[sp.csr_array] = []
    sentence_parts: list[sp.csr_array] = []
    sentences: list[str] = []
    used_terms: set[str] = set()
    picked: list[tuple[Segment, IntArray]] = []
    for segment, mask in parts:
        if segment.weighted:
            raise ValueError(f"segment {segment.id} is a first-wave index and cannot be merged")
        live_rows = np.flatnonzero(mask)
        picked.append((segment, live_rows))
        used = np.unique(segment.publication_tf[live_rows].indices) if len(live_rows) else np.empty(0, np.int64)
        used_terms.update(segment.terms[int(t)] for t in used)
    terms = sorted(used_terms)
    column_of = {term: column for column, term in enumerate(terms)}
    lengths = []
    for segment, rows in picked:
        to_merged = np.fromiter((column_of.get(t, -1) for t in segment.terms), np.int64, count=len(segment.terms))
        offsets = np.asarray(segment.sentence_offsets, dtype=np.int64)
        sentence_rows = ranges(offsets[rows], offsets[rows + 1])
        publication_parts.append(_remapped(segment.publication_tf[rows], to_merged, len(terms)))
        sentence_parts.append(_remapped(segment.sentence_tf[sentence_rows], to_merged, len(terms)))
        lengths.append(offsets[rows + 1] - offsets[rows])
        infos.extend(segment.publications[int(r)] for r in rows)
        sentences.extend(segment.sentences[int(s)] for s in sentence_rows)
        fingerprints.append(np.asarray(segment.fingerprints[rows], dtype=np.uint8))
    sentence_offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths or [np.empty(0, np.int64)]))])
    publication_tf = _stacked(publication_parts, len(terms))
    return Segment(
        id=segment_id(number),
        publications=infos,
        fingerprints=np.concatenate(fingerprints) if fingerprints else np.empty((0, FINGERPRINT_BYTES), np.uint8),
        terms=terms,
        document_frequency=np.bincount(publication_tf.indices, minlength=len(terms)).astype(np.int64),
        publication_tf=publication_tf,
        sentence_tf=_stacked(sentence_parts, len(terms)),
        sentence_offsets=sentence_offsets.astype(np.int64),
        sentences=sentences,
    )


def _remapped(rows: sp.csr_array, to_merged: IntArray, n_terms: int) -> sp.csr_array:
    """``rows`` with column ``c`` moved to ``to_merged[c]`` (an ascending map, so order holds)."""
    indices = to_merged[rows.indices]
    if np.any(indices < 0):
        raise ValueError("a live row uses a term outside the merged vocabulary")
    return sp.csr_array(
        (np.asarray(rows.data, dtype=np.float32), indices, np.asarray(rows.indptr, dtype=np.int64)),
        shape=(rows.shape[0], n_terms),
    )


def ranges(starts: IntArray, ends: IntArray) -> IntArray:
    """The concatenation of ``arange(start, end)`` for each pair, vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    shifts = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    ranges: IntArray = np.arange(total, dtype=np.int64) + shifts
    return ranges


def _stacked(parts: Sequence[sp.csr_array], n_terms: int) -> sp.csr_array:
    if not parts:
        return sp.csr_array((0, n_terms), dtype=np.float32)
    stacked = sp.csr_array(sp.vstack(parts, format="csr"))
    stacked.sort_indices()
    return stacked
