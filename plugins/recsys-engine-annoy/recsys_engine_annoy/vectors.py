"""Sentence vectors for a build: encode what is new, reuse what the previous engine had.

A vector belongs to a sentence's text (:func:`~recsys_engine_annoy.corpus.sentence_key`)
for one model and backend. A build encodes each distinct text once; with a
``previous`` engine made by the same model (same weights hash) and backend, the texts
it already holds take their stored vectors instead of being encoded again, so a
rebuild after a small change of the corpus encodes only the changed sentences.
Vectors from another model or backend are never mixed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from recsys.errors import EngineLoadError
from recsys_engine_annoy import storage
from recsys_engine_annoy.corpus import sentence_key
from recsys_engine_annoy.files import load_array

__all__ = ["PreviousVectors", "SentenceVectors", "publication_means", "sentence_vectors"]

logger = logging.getLogger(__name__)

EncodeFn = Callable[[Sequence[str]], NDArray[np.float32]]


@dataclass(frozen=True)
class PreviousVectors:
    """The vectors of a previous engine, by sentence key."""

    rows: dict[bytes, int]
    vectors: NDArray[np.float16]

    @classmethod
    def open(cls, folder: Path, *, model_sha256: str, backend: str, dimension: int | None) -> PreviousVectors | None:
        """The previous engine's vectors when it was made by this model and backend;
        None (and a log line saying why) when it cannot be reused."""
        try:
            info = storage.read_info(folder)
        except EngineLoadError as exc:
            logger.info("not reusing vectors from %s: %s", folder, exc)
            return None
        if info.model_sha256 != model_sha256 or info.backend != backend:
            logger.info(
                "not reusing vectors from %s: made with model %s (%s) and backend %s, this build uses %s and %s",
                folder, info.model, info.model_sha256[:12], info.backend, model_sha256[:12], backend,
            )
            return None
        if info.vector_dtype != storage.VECTOR_DTYPE or (dimension is not None and info.dimension != dimension):
            logger.info("not reusing vectors from %s: they are %s of dimension %d", folder, info.vector_dtype,
                        info.dimension)
            return None
        try:
            vectors = load_array(folder / storage.SENTENCE_VECTORS_FILE, dtype=storage.VECTOR_DTYPE, ndim=2,
                                 mmap=True)
            storage.check_rows(storage.SENTENCE_VECTORS_FILE, vectors, info.sentences, (info.dimension,))
            texts = storage.SentenceTexts(folder, info.sentences)
        except EngineLoadError as exc:
            logger.warning("not reusing vectors from %s: %s", folder, exc)
            return None
        try:
            rows = {sentence_key(texts[row]): row for row in range(len(texts))}
        finally:
            texts.close()
        return cls(rows, vectors)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SentenceVectors:
    """A build's sentence vectors (one row per sentence) and how they were obtained."""

    vectors: NDArray[np.float16]
    encoded: int
    reused: int
    distinct: int


def sentence_vectors(
    texts: Sequence[str],
    encode: EncodeFn,
    dimension: int,
    previous: PreviousVectors | None = None,
) -> SentenceVectors:
    """Vectors for ``texts`` in order, stored as float16: each distinct text encoded
    once with ``encode``, unless ``previous`` holds it."""
    index_of: dict[bytes, int] = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    keys: list[bytes] = []
    for row, text in enumerate(texts):
        key = sentence_key(text)
        position = index_of.get(key)
        if position is None:
            position = index_of[key] = len(keys)
            keys.append(key)
        inverse[row] = position
    first_row = np.full(len(keys), -1, dtype=np.int64)
    first_row[inverse[::-1]] = np.arange(len(texts) - 1, -1, -1)  # first occurrence of each distinct text
    unique = np.empty((len(keys), dimension), dtype=np.float16)
    missing: list[int] = []
    reused = 0
    for position, key in enumerate(keys):
        old = previous.rows.get(key) if previous is not None else None
        if old is None:
            missing.append(position)
        else:
            unique[position] = previous.vectors[old]  # type: ignore[union-attr]
            reused += 1
    if missing:
        fresh = encode([texts[int(first_row[p])] for p in missing])
        if fresh.shape != (len(missing), dimension):
            raise EngineLoadError(f"the encoder returned vectors of shape {fresh.shape}, expected "
                                  f"{(len(missing), dimension)}")
        unique[missing] = fresh.astype(np.float16)
    return SentenceVectors(unique[inverse], encoded=len(missing), reused=reused, distinct=len(keys))


def publication_means(
    vectors: NDArray[np.float16], starts: NDArray[np.int64], chunk: int = 4096
) -> NDArray[np.float32]:
    """The normalised mean of each publication's sentence vectors (float32)."""
    count = len(starts) - 1
    out = np.empty((count, vectors.shape[1]), dtype=np.float32)
    for first in range(0, count, chunk):
        last = min(count, first + chunk)
        block = np.asarray(vectors[starts[first]:starts[last]], dtype=np.float32)
        sums = np.add.reduceat(block, starts[first:last] - starts[first], axis=0)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        out[first:last] = sums / np.maximum(norms, 1e-12)
    return out
