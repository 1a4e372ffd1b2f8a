"""Annoy indexes over unit vectors, with settings that keep recall@10 at 0.95 or more.

Annoy's defaults lose most true neighbours on sentence embeddings (384 dimensions):
measured on 43,307 sentence vectors, its default search finds only 33% of the exact
top 10 with 10 trees. Recall depends on how many index nodes a search inspects
(``search_k``) relative to the corpus, so both settings grow with it here:

* ``trees`` (``RECSYS_ANN_TREES``, 0: derived): :func:`derive_trees`;
* ``search_k`` (``RECSYS_ANN_SEARCH_K``, 0: derived, -1: Annoy's default):
  :func:`derive_search_k`, at least ``SEARCH_K_FACTOR × trees × n`` for ``n``
  results, and for small indexes every item, which makes the search exact.

The rules and the measurements behind them are in docs/engine-annoy.md; the benchmark
(benchmarks/engine.py) checks recall@10 on the real corpus at every size.

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
    "AnnSettings",
    "VectorIndex",
    "derive_search_k",
    "derive_trees",
    "exact_neighbours",
    "recall_at_k",
]

logger = logging.getLogger(__name__)

#: Below this many items a search inspects every item: exact, and still fast.
EXACT_BELOW = 5_000
#: search_k = SEARCH_K_FACTOR × trees × results wanted (at least; see derive_search_k).
SEARCH_K_FACTOR = 10
#: Fraction of the items a search inspects at least (keeps recall on large indexes).
SEARCH_FRACTION = 0.1
_SEED = 42


def derive_trees(items: int) -> int:
    """Trees for an index of ``items`` vectors: 10 for tiny ones, growing to 100."""
    if items <= 1:
        return 1
    return int(min(100, max(10, round(8 * math.log2(items) - 60))))


def derive_search_k(items: int, trees: int, wanted: int) -> int:
    """Nodes one search inspects to return ``wanted`` results from ``items`` vectors."""
    if items < EXACT_BELOW:
        return items * trees  # every leaf of every tree: exact
    return int(max(SEARCH_K_FACTOR * trees * wanted, SEARCH_FRACTION * items))


@dataclass(frozen=True)
class AnnSettings:
    """How an index is built and searched: ``trees``; ``search_k`` 0 (derive per query),
    -1 (Annoy's default) or a fixed number of nodes."""

    trees: int
    search_k: int = 0

    @classmethod
    def for_items(cls, items: int, trees: int = 0, search_k: int = 0) -> AnnSettings:
        """Settings for ``items`` vectors; 0 derives a value (the settings' convention)."""
        return cls(trees=trees if trees > 0 else derive_trees(items), search_k=search_k)

    def search_k_for(self, items: int, wanted: int) -> int:
        if self.search_k != 0:
            return self.search_k
        return derive_search_k(items, self.trees, wanted)

    def to_dict(self) -> dict[str, int]:
        return {"trees": self.trees, "search_k": self.search_k}


class VectorIndex:
    """An angular Annoy index over unit vectors; item ``i`` is row ``i`` of the vectors.

    Searches return ``(items, cosines)``, best first. Safe to search from several
    threads (Annoy's queries only read the index).
    """

    def __init__(self, index: AnnoyIndex, dimension: int, items: int, settings: AnnSettings) -> None:
        self._index = index
        self.dimension = dimension
        self.items = items
        self.settings = settings

    @classmethod
    def build(cls, vectors: NDArray[np.float32], settings: AnnSettings, *, jobs: int = -1) -> VectorIndex:
        """Build in memory from ``vectors`` (one row per item), with a fixed seed so that
        two builds of the same vectors are the same index."""
        items, dimension = vectors.shape
        index = AnnoyIndex(dimension, "angular")
        index.set_seed(_SEED)
        for item in range(items):
            index.add_item(item, vectors[item].tolist())
        index.build(settings.trees, n_jobs=jobs)
        return cls(index, dimension, items, settings)

    @classmethod
    def load(cls, path: Path, dimension: int, items: int, settings: AnnSettings) -> VectorIndex:
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
        return cls(index, dimension, items, settings)

    def save(self, path: Path) -> None:
        """Write the index to ``path``; it is then served memory-mapped from that file."""
        if not self._index.save(str(path), prefault=False):
            raise OSError(f"Annoy could not write {path}")

    def search(self, vector: NDArray[np.float32], wanted: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The ``wanted`` nearest items to ``vector`` and their cosine similarities."""
        wanted = min(wanted, self.items)
        if wanted <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        search_k = self.settings.search_k_for(self.items, wanted)
        ids, distances = self._index.get_nns_by_vector(vector.tolist(), wanted, search_k, True)
        # Annoy's angular distance is sqrt(2 - 2 cos) for unit vectors.
        dist = np.asarray(distances, dtype=np.float32)
        return np.asarray(ids, dtype=np.int64), 1.0 - dist * dist / 2.0

    def close(self) -> None:
        self._index.unload()


def exact_neighbours(
    vectors: NDArray[np.float32], queries: NDArray[np.float32], k: int, *, exclude_self: NDArray[np.int64] | None = None
) -> NDArray[np.int64]:
    """Exact top ``k`` rows of ``vectors`` by cosine for each query row (unit vectors),
    best first; ``exclude_self[i]`` is a row never returned for query ``i``."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 256):
        block = queries[start:start + 256] @ vectors.T
        if exclude_self is not None:
            block[np.arange(len(block)), exclude_self[start:start + 256]] = -np.inf
        top = np.argpartition(-block, k, axis=1)[:, :k]
        order = np.take_along_axis(block, top, axis=1).argsort(axis=1)[:, ::-1]
        out[start:start + len(block)] = np.take_along_axis(top, order, axis=1)
    return out


def recall_at_k(index: VectorIndex, vectors: NDArray[np.float32], sample: NDArray[np.int64], k: int = 10) -> float:
    """Mean share of the exact top ``k`` neighbours that ``index`` finds, for the items
    ``sample`` used as queries (each query's own item left out of both lists)."""
    truth = exact_neighbours(vectors, vectors[sample], k, exclude_self=sample)
    found = 0
    for row, item in enumerate(sample):
        ids, _ = index.search(np.asarray(vectors[item], dtype=np.float32), k + 1)
        got = [i for i in ids.tolist() if i != item][:k]
        found += len(set(got) & set(truth[row].tolist()))
    return found / (k * len(sample)) if len(sample) else 1.0
