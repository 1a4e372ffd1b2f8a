"""Which indexes a query searches, and how hard (see ranking.py and docs/engine-annoy.md)."""

from __future__ import annotations

import dataclasses

import numpy as np

from recsys.domain import Query
from recsys_engine_annoy import AnnoyEngine, ranking
from recsys_engine_annoy.ann import EXACT_BELOW, PUBLICATIONS_EXACT_BELOW, AnnSettings, VectorIndex

TEXT = "Graph neural networks predict molecular properties from few labelled examples."


class Spy:
    """Wraps a VectorIndex and records the effort of each search."""

    def __init__(self, index: VectorIndex) -> None:
        self.index, self.efforts = index, []

    def __getattr__(self, name):
        return getattr(self.index, name)

    def search(self, vector, wanted, *, effort=1.0):
        self.efforts.append(effort)
        return self.index.search(vector, wanted, effort=effort)


def test_publication_indexes_are_searched_exactly_up_to_a_larger_size():
    assert EXACT_BELOW < PUBLICATIONS_EXACT_BELOW
    between = (EXACT_BELOW + PUBLICATIONS_EXACT_BELOW) // 2
    assert not AnnSettings.for_items(between).exact
    assert AnnSettings.for_items(between, exact_below=PUBLICATIONS_EXACT_BELOW).exact
    assert not AnnSettings.for_items(between, search_k=500, exact_below=PUBLICATIONS_EXACT_BELOW).exact


def test_a_small_segment_has_no_index_and_is_scanned_exactly(engine):
    (segment,) = engine.data.segments
    assert segment.publication_index is None and segment.sentence_index is None
    query = Query(text=TEXT, k=5)
    qv = engine.query_vectors(query)
    scores = segment.publication_vectors @ qv.mean
    expected = [engine.data.publications.ids[i] for i in np.argsort(-scores)[:5]]
    assert [r.publication_id for r in ranking.rank(engine.data, query, qv)] == expected


def approximate(engine: AnnoyEngine) -> tuple[ranking.EngineData, Spy, Spy]:
    """The engine's data with its segment searched by Annoy (as a large segment would be)."""
    data = engine.data
    (segment,) = data.segments
    papers = Spy(VectorIndex.build(np.asarray(segment.publication_vectors), AnnSettings(trees=10)))
    sentences = Spy(VectorIndex.build(np.asarray(segment.sentence_vectors, dtype=np.float32), AnnSettings(trees=10)))
    annoyed = dataclasses.replace(segment, publication_index=papers, sentence_index=sentences)
    return ranking.EngineData.of((annoyed,), data.publications), sentences, papers


def test_text_queries_search_harder_than_by_id_queries_when_approximate(engine, small_corpus, monkeypatch):
    # a by-id query excludes itself: keep that filter from being answered by scoring every row
    monkeypatch.setattr(ranking, "EXACT_FILTER_ROWS", 0)
    monkeypatch.setattr(ranking, "EXACT_FILTER_SHARE", 0.0)
    data, sentences, publications = approximate(engine)
    text = Query(text=TEXT, k=5)
    assert ranking.rank(data, text, engine.query_vectors(text))
    assert publications.efforts == [ranking.TEXT_EFFORT]
    assert sentences.efforts == [ranking.SENTENCE_EFFORT]  # one sentence: one search for extra candidates
    publications.efforts.clear()
    sentences.efforts.clear()
    by_id = Query(publication_id=small_corpus[0].id, k=5)
    assert ranking.rank(data, by_id, engine.query_vectors(by_id))
    assert publications.efforts == [1.0] and sentences.efforts == []


def test_an_annoy_segment_finds_what_an_exact_scan_finds_on_a_small_corpus(engine, small_corpus):
    data, _, _ = approximate(engine)
    for query in (Query(text=TEXT, k=10), Query(publication_id=small_corpus[7].id, k=10)):
        qv = engine.query_vectors(query)
        got = [r.publication_id for r in ranking.rank(data, query, qv, engine.fusion(query, qv))]
        assert got == [r.publication_id for r in engine.recommend(query)]
