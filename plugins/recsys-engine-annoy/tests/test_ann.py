"""Annoy settings: derived from the corpus size, they keep recall@10 at 0.95 or more.

A quality check on synthetic clustered vectors shaped like sentence embeddings (384
dimensions, many topics, wide spread within a topic): hard enough that Annoy's default
search misses many true neighbours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys_engine_annoy.ann import (
    EXACT_BELOW,
    AnnSettings,
    VectorIndex,
    derive_search_k,
    derive_trees,
    exact_neighbours,
    recall_at_k,
)


def clustered(items: int, *, dimension: int = 384, topics: int = 200, spread: float = 2.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dimension))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = centres[rng.integers(0, topics, items)] + spread * rng.standard_normal((items, dimension)) / np.sqrt(
        dimension
    )
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def large():
    """Vectors above the exact threshold, and an index with the derived settings."""
    vectors = clustered(EXACT_BELOW + 4_000)
    index = VectorIndex.build(vectors, AnnSettings.for_items(len(vectors)))
    sample = np.random.default_rng(1).choice(len(vectors), 300, replace=False)
    yield vectors, index, sample
    index.close()


def test_derived_settings_grow_with_the_corpus():
    assert [derive_trees(n) for n in (10, 1_000, 20_000, 50_000, 300_000)] == [10, 10, 20, 50, 50]
    ks = [derive_search_k(n, derive_trees(n), 11) for n in (20_000, 100_000, 300_000)]
    assert ks == sorted(ks) and ks[-1] > 10 * 50 * 11
    assert not AnnSettings.for_items(EXACT_BELOW).exact and AnnSettings.for_items(EXACT_BELOW - 1).exact


def test_effort_scales_the_derived_search_k_but_not_a_fixed_one():
    items, trees = 300_000, 50
    assert abs(derive_search_k(items, trees, 10, effort=2.0) - 2 * derive_search_k(items, trees, 10)) <= 1
    assert derive_search_k(items, trees, 10, effort=0.0) == 10 * trees * 10  # Annoy's own rule
    assert AnnSettings(trees, search_k=777).search_k_for(items, 10, effort=2.0) == 777


def test_more_effort_finds_more_true_neighbours(large):
    vectors, index, sample = large
    found = {}
    for effort in (0.0, 1.0):
        truth_hits = 0
        for item in sample[:100]:
            exact = set(np.argsort(-(vectors @ vectors[item]))[:10].tolist())
            truth_hits += len(exact & set(index.search(vectors[item], 10, effort=effort)[0].tolist()))
        found[effort] = truth_hits
    assert found[0.0] < found[1.0]


def test_derived_settings_keep_recall_where_annoys_default_does_not(large):
    vectors, index, sample = large
    assert not index.settings.exact
    default = index.with_settings(AnnSettings(index.settings.trees, search_k=-1))
    assert recall_at_k(default, vectors, sample) < 0.9, "the synthetic set is too easy to test anything"
    assert recall_at_k(index, vectors, sample) >= 0.95


def test_small_corpora_are_searched_exactly():
    vectors = clustered(3_000, seed=2)
    index = VectorIndex.build(vectors, AnnSettings.for_items(len(vectors)))
    sample = np.arange(0, 3_000, 10)
    assert index.settings.exact and recall_at_k(index, vectors, sample) == 1.0


def test_search_returns_cosines_best_first(large):
    vectors, index, _ = large
    ids, cosines = index.search(vectors[7], 10)
    assert ids[0] == 7 and cosines[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(cosines) <= 1e-6)
    assert np.allclose(cosines, vectors[ids] @ vectors[7], atol=1e-4)


def test_saved_index_is_loaded_memory_mapped(large, tmp_path):
    vectors, index, _ = large
    index.save(tmp_path / "index.ann")
    loaded = VectorIndex.load(tmp_path / "index.ann", len(vectors), vectors.shape[1], index.settings)
    try:
        assert str(tmp_path / "index.ann") in Path("/proc/self/maps").read_text()
        assert loaded.search(vectors[3], 5)[0].tolist() == index.search(vectors[3], 5)[0].tolist()
    finally:
        loaded.close()


def test_exact_neighbours_leave_the_query_out():
    vectors = clustered(500, seed=3)
    sample = np.array([0, 5, 9])
    top = exact_neighbours(vectors, vectors[sample], 10, exclude_self=sample)
    assert top.shape == (3, 10) and not any(s in row for s, row in zip(sample, top.tolist(), strict=True))
