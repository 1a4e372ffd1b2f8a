"""The engine benchmark's sentence-vector cache: every distinct sentence of the corpus encoded
once per backend, in float32, kept outside the repository between runs.

Encoding the 320,833 distinct sentences of the full corpus takes 15-60 minutes on the two
busy cores, so ``benchmarks/engine.py`` encodes them once (:meth:`VectorCache.fill`, in
chunks of 20,000 that survive an interrupted run, each with the seconds it took), and its
builds then take vectors from the cache (:class:`CachedEncoder`): a build's own time is
measured without the encoding, and the encoding time of a full build is the cache's
measured rate (both are reported). Sentences the cache lacks (the rewritten sentences of
a rebuild after a change) are encoded for real by the build. The float32 vectors also
give the float16 measurements (the engine stores float16).

Layout: ``<folder>/<backend>/chunk000.npy`` (float32 [20000, dimension]) and
``chunk000.json`` (``{"sentences", "seconds", "load"}``), chunk ``c`` holding distinct
sentences ``20000 c`` to ``20000 (c + 1)`` of the corpus in order.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.domain import Publication
from recsys_engine_annoy.corpus import publication_sentences, sentence_key

__all__ = ["CHUNK", "CachedEncoder", "VectorCache", "distinct_sentences"]

CHUNK = 20_000


def distinct_sentences(publications: Sequence[Publication]) -> list[str]:
    """Every distinct sentence of the corpus, in order of first appearance."""
    return list(dict.fromkeys(s for p in publications for s in publication_sentences(p)))


class VectorCache:
    """float32 vectors of the corpus's distinct sentences for one backend."""

    def __init__(self, folder: Path, texts: list[str]) -> None:
        self.folder = folder
        self.texts = texts
        self.chunks = (len(texts) + CHUNK - 1) // CHUNK
        self._rows: dict[bytes, int] | None = None
        self._parts: list[np.ndarray] = []

    def complete(self) -> bool:
        return all((self.folder / f"chunk{c:03d}.npy").is_file() for c in range(self.chunks))

    def fill(self, encoder: Any, log: Callable[[str], None]) -> None:
        """Encode the chunks not yet in the cache, each with its timing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for chunk in range(self.chunks):
            target = self.folder / f"chunk{chunk:03d}.npy"
            if target.is_file():
                continue
            texts = self.texts[chunk * CHUNK:(chunk + 1) * CHUNK]
            started = time.perf_counter()
            vectors = encoder.encode(texts, batch_size=32)
            seconds = time.perf_counter() - started
            np.save(self.folder / "partial.npy", vectors.astype(np.float32))
            (self.folder / "partial.npy").rename(target)
            (self.folder / f"chunk{chunk:03d}.json").write_text(json.dumps(
                {"sentences": len(texts), "seconds": seconds, "load": list(os.getloadavg())}))
            log(f"  {self.folder.name}: chunk {chunk + 1}/{self.chunks}, {len(texts) / seconds:.0f} sentences/s")

    def timing(self) -> dict[str, float]:
        """Sentences encoded into the cache and the seconds that took (chunks with a timing)."""
        sentences = seconds = 0.0
        for chunk in range(self.chunks):
            record = self.folder / f"chunk{chunk:03d}.json"
            if record.is_file():
                data = json.loads(record.read_text())
                sentences += data["sentences"]
                seconds += data["seconds"]
        return {"sentences": sentences, "seconds": seconds, "rate": sentences / seconds if seconds else float("nan")}

    @property
    def dimension(self) -> int:
        return int(np.load(self.folder / "chunk000.npy", mmap_mode="r").shape[1])

    def _load(self) -> dict[bytes, int]:
        if self._rows is None:
            self._parts = [np.load(self.folder / f"chunk{c:03d}.npy", mmap_mode="r") for c in range(self.chunks)]
            self._rows = {sentence_key(text): row for row, text in enumerate(self.texts)}
        return self._rows

    def lookup(self, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(found, vectors)``: which sentences the cache holds, and their float32 vectors
        (rows of missing ones are zero)."""
        rows = self._load()
        where = np.array([rows.get(sentence_key(s), -1) for s in sentences], dtype=np.int64)
        found = where >= 0
        dimension = self._parts[0].shape[1]
        out = np.zeros((len(sentences), dimension), dtype=np.float32)
        chunk_of = np.where(found, where // CHUNK, -1)
        for chunk in np.unique(chunk_of[found]):
            picked = np.flatnonzero(chunk_of == chunk)
            out[picked] = self._parts[int(chunk)][where[picked] - int(chunk) * CHUNK]
        return found, out


class CachedEncoder:
    """An encoder that takes vectors from a :class:`VectorCache` and encodes (for real, with
    the engine's encoder, made at first need) only what the cache lacks."""

    def __init__(self, cache: VectorCache, make: Callable[[], Any], backend: str) -> None:
        self.cache, self._make, self._inner = cache, make, None
        self.backend, self.dimension = backend, cache.dimension
        self.cached = self.encoded = 0
        self.encode_seconds = 0.0

    def encode(self, sentences: Sequence[str], *, batch_size: int = 32,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        found, vectors = self.cache.lookup(sentences)
        missing = np.flatnonzero(~found)
        self.cached += int(found.sum())
        if len(missing):
            if self._inner is None:
                self._inner = self._make()
            started = time.perf_counter()
            vectors[missing] = self._inner.encode([sentences[i] for i in missing], batch_size=batch_size)
            self.encode_seconds += time.perf_counter() - started
            self.encoded += len(missing)
        if progress is not None:
            progress(len(sentences))
        return vectors

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
