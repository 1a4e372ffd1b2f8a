"""Segments: immutable runs of publications with their sentences, vectors and indexes.

An engine is a list of segments (:mod:`recsys_engine_annoy.layout`). A segment is written
once, into ``segments/<id>/``, and never changed: an incremental build copies (hard-links)
the folders of the segments it keeps byte-identical, writes the new and changed
publications as a new segment, and records removed or replaced publications as
tombstones beside the segments (never inside them). Its files (:mod:`~recsys_engine_annoy.storage`)::

    segment.json             counts, dimension, and the settings of its Annoy files (if any)
    publications.jsonl, fingerprints.npy, sentences.txt, sentence_offsets.npy,
    sentence_starts.npy, sentence_vectors.npy (float16), publication_vectors.npy (float32)
    publications.ann, sentences.ann     only for a segment searched with Annoy (see below)

**Annoy only where it is searched.** A segment of fewer than
:data:`~recsys_engine_annoy.ann.PUBLICATIONS_EXACT_BELOW` publications is scanned exactly
(its float32 publication vectors are memory-mapped; 36,949 take 1.8 ms), and then the
sentence index is never searched either (an exact scan already holds the exact top k):
such a segment has no ``.ann`` file at all. A larger segment gets both Annoy indexes. A
fixed ``RECSYS_ANNOY_SEARCH_K`` turns exact scans off, so every segment gets them.

A segment built in this process holds its arrays in memory; a loaded or kept one maps its
files read-only (``source`` is then its folder).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.errors import EngineLoadError
from recsys_engine_annoy import ann, storage
from recsys_engine_annoy.ann import AnnSettings, VectorIndex, derive_trees
from recsys_engine_annoy.files import load_array, save_array
from recsys_engine_annoy.storage import PublicationRecords, Texts

__all__ = ["SEGMENT_FILE", "IndexRule", "Segment", "link_or_copy", "merge_segments", "read_segment"]

logger = logging.getLogger(__name__)

SEGMENT_FILE = "segment.json"
_DATA_FILES = (
    storage.PUBLICATIONS_FILE, storage.SENTENCES_FILE, storage.OFFSETS_FILE, storage.STARTS_FILE,
    storage.SENTENCE_VECTORS_FILE, storage.PUBLICATION_VECTORS_FILE,
)


@dataclass(frozen=True)
class IndexRule:
    """Which segments get Annoy files, and their settings: ``trees`` and ``search_k`` as
    configured (0: derived from the segment's size; a fixed ``search_k`` turns exact scans off)."""

    trees: int = 0
    search_k: int = 0
    #: Segments of fewer publications are scanned exactly (this code's rule, read when the
    #: rule is made: :data:`~recsys_engine_annoy.ann.PUBLICATIONS_EXACT_BELOW`).
    exact_below: int = field(default_factory=lambda: ann.PUBLICATIONS_EXACT_BELOW)

    def publication_settings(self, publications: int) -> AnnSettings | None:
        """The Annoy settings of a segment's publication index; None: scanned exactly, no index."""
        settings = AnnSettings.for_items(publications, self.trees, self.search_k, self.exact_below)
        return None if settings.exact else settings

    def sentence_settings(self, sentences: int) -> AnnSettings:
        """The settings of the sentence index of a segment that has a publication index."""
        return AnnSettings(trees=self.trees if self.trees > 0 else derive_trees(sentences), search_k=self.search_k)


@dataclass(frozen=True)
class Segment:
    """One segment's publications, sentences, vectors and (past a size) Annoy indexes."""

    id: str
    records: PublicationRecords
    #: sha256 of each publication's indexed fields (None: a first-wave engine, which has none).
    fingerprints: NDArray[np.uint8] | None
    texts: Texts
    starts: NDArray[np.int64]
    sentence_vectors: NDArray[np.float16]
    publication_vectors: NDArray[np.float32]
    publication_index: VectorIndex | None = None
    sentence_index: VectorIndex | None = None
    #: The folder holding this segment's files (kept or loaded), None when built in memory.
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def sentences(self) -> int:
        return int(self.starts[-1])

    @classmethod
    def build(
        cls,
        segment_id: str,
        records: PublicationRecords,
        fingerprints: NDArray[np.uint8] | None,
        texts: Texts,
        starts: NDArray[np.int64],
        sentence_vectors: NDArray[np.float16],
        publication_vectors: NDArray[np.float32],
        rule: IndexRule,
    ) -> Segment:
        """A new in-memory segment, with Annoy indexes when its size calls for them."""
        paper_settings = rule.publication_settings(len(records))
        paper_index = sentence_index = None
        if paper_settings is not None:
            paper_index = VectorIndex.build(publication_vectors, paper_settings)
            sentence_index = VectorIndex.build(np.asarray(sentence_vectors, dtype=np.float32),
                                               rule.sentence_settings(len(sentence_vectors)))
        return cls(segment_id, records, fingerprints, texts, starts, sentence_vectors, publication_vectors,
                   paper_index, sentence_index)

    def describe(self) -> dict[str, Any]:
        """``segment.json``."""
        return {
            "id": self.id,
            "publications": len(self),
            "sentences": self.sentences,
            "dimension": int(self.publication_vectors.shape[1]),
            "vector_dtype": storage.VECTOR_DTYPE,
            "fingerprints": self.fingerprints is not None,
            "publication_index": self.publication_index.settings.to_dict() if self.publication_index else None,
            "sentence_index": self.sentence_index.settings.to_dict() if self.sentence_index else None,
        }

    def write(self, folder: Path) -> None:
        """Write the segment into ``folder`` (created). A segment read from files is
        hard-linked (or copied) from them byte for byte."""
        folder.mkdir(parents=True)
        if self.source is not None and (self.source / SEGMENT_FILE).is_file():
            for path in sorted(self.source.iterdir()):
                if path.is_file():
                    link_or_copy(path, folder / path.name)
            return
        self.records.write(folder / storage.PUBLICATIONS_FILE)
        if self.fingerprints is not None:
            save_array(folder / storage.FINGERPRINTS_FILE, self.fingerprints)
        storage.write_sentences(folder, self.texts)
        save_array(folder / storage.STARTS_FILE, self.starts)
        save_array(folder / storage.SENTENCE_VECTORS_FILE, self.sentence_vectors)
        save_array(folder / storage.PUBLICATION_VECTORS_FILE, self.publication_vectors)
        if self.publication_index is not None:
            self.publication_index.save(folder / storage.PUBLICATION_INDEX_FILE)
        if self.sentence_index is not None:
            self.sentence_index.save(folder / storage.SENTENCE_INDEX_FILE)
        (folder / SEGMENT_FILE).write_text(json.dumps(self.describe(), indent=2) + "\n", encoding="utf-8")

    def close(self) -> None:
        for index in (self.publication_index, self.sentence_index):
            if index is not None:
                index.close()
        close = getattr(self.texts, "close", None)
        if close is not None:
            close()


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` as ``target`` (same bytes, no copy), or copy it where links fail."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def read_segment(folder: Path, segment_id: str, *, dimension: int, rule: IndexRule,
                 publications: int | None = None, described: dict[str, Any] | None = None) -> Segment:
    """Map a segment's files (read-only). ``described`` stands in for a missing
    ``segment.json`` (a first-wave engine's top folder, which has no fingerprints). Its
    Annoy files are used only where ``rule`` (the engine's settings, this code's sizes)
    wants an index: whether a search is exact is decided again at load."""
    if described is None:
        described = _read_description(folder, segment_id, dimension)
    count, has_fingerprints = int(described["publications"]), bool(described.get("fingerprints"))
    if publications is not None and count != publications:
        raise EngineLoadError(f"segment {segment_id} holds {count} publications, engine.json says {publications}")
    records = PublicationRecords.read(folder / storage.PUBLICATIONS_FILE, count)
    starts = load_array(folder / storage.STARTS_FILE, dtype="int64", ndim=1)
    storage.check_rows(storage.STARTS_FILE, starts, count + 1)
    if starts[0] != 0 or np.any(np.diff(starts) <= 0):
        raise EngineLoadError(f"{storage.STARTS_FILE} in {folder} is damaged; rebuild the engine")
    sentences = int(starts[-1])
    sentence_vectors = load_array(folder / storage.SENTENCE_VECTORS_FILE, dtype=storage.VECTOR_DTYPE, ndim=2,
                                  mmap=True)
    paper_vectors = load_array(folder / storage.PUBLICATION_VECTORS_FILE, dtype="float32", ndim=2, mmap=True)
    storage.check_rows(storage.SENTENCE_VECTORS_FILE, sentence_vectors, sentences, (dimension,))
    storage.check_rows(storage.PUBLICATION_VECTORS_FILE, paper_vectors, count, (dimension,))
    fingerprints = None
    if has_fingerprints:
        fingerprints = load_array(folder / storage.FINGERPRINTS_FILE, dtype="uint8", ndim=2)
        storage.check_rows(storage.FINGERPRINTS_FILE, fingerprints, count, (32,))
    texts = storage.SentenceTexts(folder, sentences)
    paper_index = sentence_index = None
    if described.get("publication_index") and rule.publication_settings(count) is not None:
        paper_index = _load_index(folder / storage.PUBLICATION_INDEX_FILE, described["publication_index"], count,
                                  dimension)
        if described.get("sentence_index"):
            sentence_index = _load_index(folder / storage.SENTENCE_INDEX_FILE, described["sentence_index"],
                                         sentences, dimension)
    return Segment(segment_id, records, fingerprints, texts, starts, sentence_vectors,  # type: ignore[arg-type]
                   paper_vectors, paper_index, sentence_index, source=folder)  # type: ignore[arg-type]


def _read_description(folder: Path, segment_id: str, dimension: int) -> dict[str, Any]:
    path = folder / SEGMENT_FILE
    try:
        described = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineLoadError(f"segment {segment_id} is missing from the engine folder ({path}); rebuild it") from None
    except (OSError, ValueError) as exc:
        raise EngineLoadError(f"cannot read {path}: {exc}; rebuild the engine") from exc
    if not isinstance(described, dict) or described.get("id") != segment_id:
        raise EngineLoadError(f"{path} does not describe segment {segment_id}; the engine folder is damaged")
    if described.get("dimension") != dimension or described.get("vector_dtype") != storage.VECTOR_DTYPE:
        raise EngineLoadError(f"segment {segment_id} holds vectors of another shape or type; rebuild the engine")
    if not isinstance(described.get("publications"), int) or described["publications"] <= 0:
        raise EngineLoadError(f"{path} has no valid publication count; the engine folder is damaged")
    return described


def _load_index(path: Path, described: Any, items: int, dimension: int) -> VectorIndex:
    settings = AnnSettings(trees=int(described["trees"]), search_k=int(described["search_k"]))
    return VectorIndex.load(path, items, dimension, settings)


def merge_segments(segment_id: str, parts: Sequence[tuple[Segment, NDArray[np.int64]]], rule: IndexRule) -> Segment:
    """One new segment holding the live publications of ``parts`` (each a segment and its
    tombstoned rows), in order. Stored vectors and texts are copied, never encoded again."""
    records: list[PublicationRecords] = []
    prints: list[NDArray[np.uint8]] = []
    texts: list[str] = []
    starts = [np.zeros(1, dtype=np.int64)]
    sentence_parts: list[NDArray[np.float16]] = []
    paper_parts: list[NDArray[np.float32]] = []
    for segment, deleted in parts:
        keep = np.setdiff1d(np.arange(len(segment)), deleted)
        if not len(keep):
            continue
        records.append(segment.records.take(keep.tolist()))
        if segment.fingerprints is not None:
            prints.append(np.asarray(segment.fingerprints[keep]))
        counts = segment.starts[keep + 1] - segment.starts[keep]
        rows = np.concatenate([np.arange(segment.starts[p], segment.starts[p + 1]) for p in keep])
        texts.extend(segment.texts[int(r)] for r in rows)
        starts.append(starts[-1][-1] + np.cumsum(counts))
        sentence_parts.append(np.asarray(segment.sentence_vectors[rows]))
        paper_parts.append(np.asarray(segment.publication_vectors[keep]))
    if not records:
        raise ValueError("nothing to merge: every publication of these segments is tombstoned")
    fingerprints = np.concatenate(prints) if len(prints) == len(records) else None
    return Segment.build(segment_id, PublicationRecords.concat(records), fingerprints, texts,
                         np.concatenate(starts), np.concatenate(sentence_parts), np.concatenate(paper_parts), rule)
