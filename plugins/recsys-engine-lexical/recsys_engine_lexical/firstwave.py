"""First-wave engine folders (format 1: one index, no segments), read as one segment.

::

    lexical.json                        format 1, tokenizer settings (stopwords included), counts
    vocabulary.json                     the terms, in column order
    idf.npy                             float64 [terms]
    publications.json                   [{"id", "title", "label", "year"}], in row order
    publication_vectors.{data,indices,indptr}.npy   CSR [publications x terms], final TF-IDF weights
    sentence_vectors.{data,indices,indptr}.npy      CSR [sentences x terms], final TF-IDF weights
    sentence_offsets.npy                int64 [publications + 1]
    sentences.txt + sentence_text_offsets.npy       every sentence, UTF-8, and byte offsets

Its vectors already hold the weights of its idf, so the index serves them as they are
(``Segment.weighted``; :class:`recsys_engine_lexical.index.LexicalIndex` with the stored
idf). Such a segment has no fingerprints and cannot be merged: an incremental build
from a first-wave ``previous`` is a full build. Saving a loaded first-wave engine
copies its files as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from recsys.errors import EngineLoadError
from recsys_engine_lexical.files import (
    MappedSentences,
    array,
    check_offsets,
    matrix,
    publications,
    read_json,
)
from recsys_engine_lexical.segment import FINGERPRINT_BYTES, Segment

__all__ = ["FIRST_WAVE_FILES", "load_first_wave"]

FIRST_WAVE_FILES = (
    "lexical.json", "vocabulary.json", "idf.npy", "publications.json",
    *(f"{m}.{p}.npy" for m in ("publication_vectors", "sentence_vectors") for p in ("data", "indices", "indptr")),
    "sentence_offsets.npy", "sentences.txt", "sentence_text_offsets.npy",
)


def load_first_wave(folder: Path) -> tuple[Segment, npt.NDArray[np.float64]]:
    """The first-wave index in ``folder`` as one weighted segment, and its idf."""
    terms = read_json(folder, "vocabulary.json")
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise EngineLoadError(f"{folder / 'vocabulary.json'} must be a JSON list of strings")
    infos = publications(folder, "publications.json")
    idf = np.asarray(array(folder, "idf.npy", (len(terms),), "f"), dtype=np.float64)
    offsets = array(folder, "sentence_offsets.npy", (len(infos) + 1,), "i")
    check_offsets(folder / "sentence_offsets.npy", offsets, None)
    n_sentences = int(offsets[-1])
    text_offsets = array(folder, "sentence_text_offsets.npy", (n_sentences + 1,), "i")
    text_path = folder / "sentences.txt"
    try:
        size = text_path.stat().st_size
    except OSError as exc:
        raise EngineLoadError(f"cannot read {text_path}: {exc}") from exc
    check_offsets(folder / "sentence_text_offsets.npy", text_offsets, size)
    segment = Segment(
        id="first-wave",
        publications=infos,
        fingerprints=np.zeros((len(infos), FINGERPRINT_BYTES), dtype=np.uint8),
        terms=terms,
        document_frequency=np.ones(len(terms), dtype=np.int64),  # unknown; unused with a stored idf
        publication_tf=matrix(folder, "publication_vectors", (len(infos), len(terms))),
        sentence_tf=matrix(folder, "sentence_vectors", (n_sentences, len(terms))),
        sentence_offsets=offsets,
        sentences=MappedSentences(text_path, text_offsets) if n_sentences else [],
        folder=folder,
        weighted=True,
    )
    return segment, idf
