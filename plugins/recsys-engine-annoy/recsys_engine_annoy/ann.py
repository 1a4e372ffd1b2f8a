"""Annoy indexes over unit vectors, with settings that keep recall@10 at 0.95 or more.

Annoy's defaults lose most true neighbours on sentence embeddings (384 dimensions):
on 43,307 sentence vectors its default search finds only a third of the exact top 10
with 10 trees. Measured on this corpus's sentence vectors (docs/engine-annoy.md),
recall depends on how many candidates a search inspects (``search_k``) against the
size of the index, hardly on the number of trees beyond 50; ``search_k = 80 * sqrt(items)``
holds recall@10 at 0.96-0.97 from 20,000 to 87,000 vectors (0.27 * items at 87,000).

* ``trees`` (``RECSYS_ANNOY_TREES``, 0: derived): :func:`derive_trees`, one per thousand
  items, from 10 up to 50;
* ``search_k`` (``RECSYS_ANNOY_SEARCH_K``, 0: derived, -1: Annoy's default):
  :func:`derive_search_k`, ``max(effort * 80 * sqrt(items), 10 * trees * wanted)``. A
  search's ``effort`` is 1 unless its caller knows better: the ranking searches the
  publication index harder for text queries and the sentence index with Annoy's own rule
  (``effort`` 0) when it only looks for extra candidates (see ranking.py). A fixed
  ``RECSYS_ANNOY_SEARCH_K`` is used as set, whatever the effort.

Below :data:`EXACT_BELOW` items a search is exact (numpy over the vectors): it is as
fast as Annoy at that size and never misses. The publication index, whose float32
vectors are memory-mapped from disk (no private copy), is searched exactly below
:data:`PUBLICATIONS_EXACT_BELOW` items: 1.8 ms for 36,949 publications, where Annoy
needs about 2 ms for a text query to find 0.97 of the exact top 10. The Annoy index is
built and saved all the same, so every engine has the same files, and whether a search
is exact is decided again when an engine is loaded.

Indexes are saved in Annoy's own file format and loaded memory-mapped without
prefaulting: the pages live in the page cache, shared by every process of the machine.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex
from numpy.typing import NDArray

from recsys.errors import EngineLoadError

__all__ = [
    "EXACT_BELOW",
    "PUBLICATIONS_EXACT_BELOW",
    "AnnSettings",
    "VectorIndex",
    "derive_search_k",
    "derive_trees",
    "exact_neighbours",
    "recall_at_k",
    "similarities",
]

logger = logging.getLogger(__name__)

#: Indexes of fewer items are searched exactly.
EXACT_BELOW = 20_000
#: ...and publication indexes of fewer than this many (their vectors are float32 on disk).
PUBLICATIONS_EXACT_BELOW = 50_000
#: search_k grows with the square root of the index size...
SEARCH_K_PER_ROOT = 80
#: ...and is at least this many times trees x results wanted.
SEARCH_K_FACTOR = 10
_SEED = 42


def derive_trees(items: int) -> int:
    """Trees for an index of ``items`` vectors: one per thousand, from 10 to 50."""
    return int(min(50, max(10, items // 1000)))


def derive_search_k(items: int, trees: int, wanted: int, effort: float = 1.0) -> int:
    """Candidates one Annoy search inspects to return ``wanted`` results from ``items`` vectors;
    ``effort`` scales the part that grows with the index (0: Annoy's ``10 * trees * wanted``)."""
    return int(max(effort * SEARCH_K_PER_ROOT * math.sqrt(items), SEARCH_K_FACTOR * trees * wanted))


@dataclass(frozen=True)
class AnnSettings:
    """How an index is built and searched: ``trees``; ``search_k`` 0 (derive per query),
    -1 (Annoy's default) or a fixed number of candidates; ``exact`` searches with numpy."""

    trees: int
    search_k: int = 0
    exact: bool = False

    @classmethod
    def for_items(cls, items: int, trees: int = 0, search_k: int = 0, exact_below: int = EXACT_BELOW) -> AnnSettings:
        """Settings for ``items`` vectors; 0 derives a value (the settings' convention).
        Indexes of fewer than ``exact_below`` items are searched exactly unless ``search_k`` is set."""
        return cls(
            trees=trees if trees > 0 else derive_trees(items),
            search_k=search_k,
            exact=items < exact_below and search_k == 0,
        )

    def search_k_for(self, items: int, wanted: int, effort: float = 1.0) -> int:
        if self.search_k != 0:
            return self.search_k
        return derive_search_k(items, self.trees, wanted, effort)

    def to_dict(self) -> dict[str, int | bool]:
        return {"trees": self.trees, "search_k": self.search_k, "exact": self.exact}


class VectorIndex:
    """An angular Annoy index over unit vectors; item ``i`` is row ``i`` of the vectors.

    Searches return ``(items, cosines)``, best first; with ``settings.exact`` they scan
    ``vectors`` (float32) with numpy instead. Safe to search from several threads
    (searches only read).
    """

    def __init__(
        self,
        index: AnnoyIndex,
        items: int,
        dimension: int,
        settings: AnnSettings,
        vectors: NDArray[np.float32] | None = None,
    ) -> None:
        if settings.exact and (vectors is None or vectors.shape != (items, dimension) or vectors.dtype != np.float32):
            raise ValueError(f"an exact index needs float32 vectors of shape {(items, dimension)}")
        self._index = index
        self.items = items
        self.dimension = dimension
        self.settings = settings
        self.vectors = vectors if settings.exact else None

    @classmethod
    def build(cls, vectors: NDArray[np.float32], settings: AnnSettings, *, jobs: int = 1) -> VectorIndex:
        """Build in memory from ``vectors`` (one row per item). With a fixed seed and one
        thread (Annoy seeds each build thread apart), two builds of the same vectors give
        the same index on any machine."""
        items, dimension = vectors.shape
        index = AnnoyIndex(dimension, "angular")
        index.set_seed(_SEED)
        for item in range(items):
            index.add_item(item, vectors[item].tolist())
        index.build(settings.trees, n_jobs=jobs)
        return cls(index, items, dimension, settings, vectors)

    @classmethod
    def load(
        cls, path: Path, items: int, dimension: int, settings: AnnSettings, vectors: NDArray[np.float32] | None = None
    ) -> VectorIndex:
        """Memory-map a saved index (not prefaulted: pages are read on demand and shared)."""
        index = AnnoyIndex(dimension, "angular")
        try:
            index.load(str(path), prefault=False)
        except OSError as exc:
            raise EngineLoadError(f"cannot load the Annoy index {path.name!r}: {exc}; rebuild the engine") from exc
        if index.get_n_items() != items:
            raise EngineLoadError(
                f"the Annoy index {path.name!r} holds {index.get_n_items()} items, the engine expects {items}; "
                "the engine folder is damaged: rebuild it"
            )
        return cls(index, items, dimension, settings, vectors)

    def save(self, path: Path) -> None:
        """Write the index to ``path``; it is then served memory-mapped from that file."""
        if not self._index.save(str(path), prefault=False):
            raise OSError(f"Annoy could not write {path}")

    def with_settings(self, settings: AnnSettings, vectors: NDArray[np.float32] | None = None) -> VectorIndex:
        """The same index searched with other settings (benchmarks: exact against Annoy)."""
        return VectorIndex(
            self._index, self.items, self.dimension, settings, vectors if vectors is not None else self.vectors
        )

    def search(
        self, vector: NDArray[np.float32], wanted: int, *, effort: float = 1.0
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The ``wanted`` nearest items to ``vector`` and their cosine similarities;
        ``effort`` scales a derived ``search_k`` (exact searches ignore it)."""
        wanted = min(wanted, self.items)
        if wanted <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if self.vectors is not None:
            scores = similarities(self.vectors, vector)
            top = _top(scores, wanted)
            return top, scores[top]
        search_k = self.settings.search_k_for(self.items, wanted, effort)
        ids, distances = self._index.get_nns_by_vector(vector.tolist(), wanted, search_k, True)
        # Annoy's angular distance is sqrt(2 - 2 cos) for unit vectors.
        dist = np.asarray(distances, dtype=np.float32)
        return np.asarray(ids, dtype=np.int64), 1.0 - dist * dist / 2.0

    def close(self) -> None:
        self._index.unload()


def similarities(vectors: NDArray[np.float32], vector: NDArray[np.float32]) -> NDArray[np.float32]:
    """``vectors @ vector`` without BLAS: a multi-threaded BLAS wakes its threads for every
    product, which costs milliseconds per query on a busy machine (measured: 8 ms for 2,600
    rows with OpenBLAS on two loaded cores, 0.4 ms this way)."""
    result: NDArray[np.float32] = np.einsum("ij,j->i", vectors, vector)
    return result


def _top(scores: NDArray[np.float32], wanted: int) -> NDArray[np.int64]:
    """Rows of the ``wanted`` highest scores, best first (ties: lower row first)."""
    if wanted < len(scores):
        part = np.argpartition(-scores, wanted - 1)[:wanted]
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))].astype(np.int64)


def exact_neighbours(
    vectors: NDArray[np.float32], queries: NDArray[np.float32], k: int, *, exclude_self: NDArray[np.int64] | None = None
) -> NDArray[np.int64]:
    """Exact top ``k`` rows of ``vectors`` by cosine for each query row (unit vectors),
    best first; ``exclude_self[i]`` is a row never returned for query ``i``."""
    k = min(k, len(vectors) - (1 if exclude_self is not None else 0))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 256):
        block = queries[start : start + 256] @ vectors.T
        if exclude_self is not None:
            block[np.arange(len(block)), exclude_self[start : start + 256]] = -np.inf
        for row, scores in enumerate(block):
            out[start + row] = _top(scores, k)
    return out


def recall_at_k(index: VectorIndex, vectors: NDArray[np.float32], sample: NDArray[np.int64], k: int = 10) -> float:
    """Mean share of the exact top ``k`` neighbours that ``index`` finds, for the items
    ``sample`` used as queries (each query's own item left out of both lists).

    A found item as similar as the exact ``k``-th counts as a true neighbour: corpora hold
    identical sentences, and which of several equal vectors comes back is arbitrary.
    """
    truth = exact_neighbours(vectors, vectors[sample], k, exclude_self=sample)
    k = truth.shape[1]
    found = 0
    for row, item in enumerate(sample):
        query = np.asarray(vectors[item], dtype=np.float32)
        ids, _ = index.search(query, k + 1)
        got = np.array([i for i in ids.tolist() if i != item][:k], dtype=np.int64)
        kth = float(vectors[truth[row, -1]] @ query)
        found += int(np.sum(vectors[got] @ query >= kth - 1e-6)) if len(got) else 0
    return found / (k * len(sample)) if len(sample) else 1.0
