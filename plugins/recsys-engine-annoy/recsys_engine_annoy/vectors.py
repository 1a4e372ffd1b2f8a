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
from recsys_engine_annoy import layout, storage
from recsys_engine_annoy.corpus import sentence_key
from recsys_engine_annoy.segments import Segment

__all__ = ["PreviousVectors", "SentenceVectors", "publication_means", "reusable", "sentence_vectors"]

logger = logging.getLogger(__name__)

EncodeFn = Callable[[Sequence[str]], NDArray[np.float32]]


@dataclass(frozen=True)
class PreviousVectors:
    """The stored sentence vectors of a previous engine's segments, by sentence key."""

    rows: dict[bytes, int]
    #: Row ``r`` is row ``r - offsets[i]`` of ``parts[i]``.
    parts: tuple[NDArray[np.float16], ...]
    offsets: NDArray[np.int64]

    @classmethod
    def of_segments(cls, segments: Sequence[Segment]) -> PreviousVectors:
        """Every sentence of ``segments`` (tombstoned publications' too: an edited
        publication's unchanged sentences keep their vectors)."""
        rows: dict[bytes, int] = {}
        offsets = np.zeros(len(segments) + 1, dtype=np.int64)
        for number, segment in enumerate(segments):
            base = int(offsets[number])
            texts = segment.texts
            for row in range(segment.sentences):
                rows.setdefault(sentence_key(texts[row]), base + row)
            offsets[number + 1] = base + segment.sentences
        return cls(rows, tuple(s.sentence_vectors for s in segments), offsets)

    def copy_into(self, out: NDArray[np.float16], pairs: NDArray[np.int64]) -> None:
        """``out[position] = vector of row`` for each ``(position, row)`` of ``pairs``."""
        part_of = np.searchsorted(self.offsets, pairs[:, 1], side="right") - 1
        for part in np.unique(part_of):
            picked = pairs[part_of == part]
            out[picked[:, 0]] = self.parts[int(part)][picked[:, 1] - self.offsets[part]]

    @classmethod
    def open(cls, folder: Path, *, model_sha256: str, backend: str, dimension: int | None) -> PreviousVectors | None:
        """The vectors of the engine in ``folder`` when it was made by this model and backend;
        None (and a log line saying why) when they cannot be reused."""
        try:
            info = layout.read_info(folder)
        except EngineLoadError as exc:
            logger.info("not reusing vectors from %s: %s", folder, exc)
            return None
        if not reusable(info, folder, model_sha256=model_sha256, backend=backend, dimension=dimension):
            return None
        try:
            segments, _ = layout.read_engine(folder, info)
        except EngineLoadError as exc:
            logger.warning("not reusing vectors from %s: %s", folder, exc)
            return None
        try:
            return cls.of_segments(segments)
        finally:
            for segment in segments:
                close = getattr(segment.texts, "close", None)
                if close is not None:
                    close()


def reusable(info: layout.EngineInfo, folder: Path, *, model_sha256: str, backend: str, dimension: int | None) -> bool:
    """Whether vectors of the engine described by ``info`` may be reused by this build (a log line says why not)."""
    if info.model_sha256 != model_sha256 or info.backend != backend:
        logger.info(
            "not reusing vectors from %s: made with model %s (%s) and backend %s, this build uses %s and %s",
            folder, info.model, info.model_sha256[:12], info.backend, model_sha256[:12], backend,
        )
        return False
    if info.vector_dtype != storage.VECTOR_DTYPE or (dimension is not None and info.dimension != dimension):
        logger.info("not reusing vectors from %s: they are %s of dimension %d", folder, info.vector_dtype,
                    info.dimension)
        return False
    return True


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
    found: list[tuple[int, int]] = []
    for position, key in enumerate(keys):
        old = previous.rows.get(key) if previous is not None else None
        if old is None:
            missing.append(position)
        else:
            found.append((position, old))
    if found and previous is not None:
        previous.copy_into(unique, np.array(found, dtype=np.int64))
    if missing:
        fresh = encode([texts[int(first_row[p])] for p in missing])
        if fresh.shape != (len(missing), dimension):
            raise EngineLoadError(f"the encoder returned vectors of shape {fresh.shape}, expected "
                                  f"{(len(missing), dimension)}")
        unique[missing] = fresh.astype(np.float16)
    return SentenceVectors(unique[inverse], encoded=len(missing), reused=len(found), distinct=len(keys))


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
