"""Which indexes a query searches, and how hard (see ranking.py and docs/engine-annoy.md)."""

from __future__ import annotations

import dataclasses

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


def spied(engine: AnnoyEngine) -> tuple[ranking.EngineData, Spy, Spy]:
    data = engine.data
    sentences, publications = Spy(data.sentence_index), Spy(data.publication_index)
    return dataclasses.replace(data, sentence_index=sentences, publication_index=publications), sentences, publications


def test_publication_indexes_are_searched_exactly_up_to_a_larger_size():
    assert EXACT_BELOW < PUBLICATIONS_EXACT_BELOW
    between = (EXACT_BELOW + PUBLICATIONS_EXACT_BELOW) // 2
    assert not AnnSettings.for_items(between).exact
    assert AnnSettings.for_items(between, exact_below=PUBLICATIONS_EXACT_BELOW).exact
    assert not AnnSettings.for_items(between, search_k=500, exact_below=PUBLICATIONS_EXACT_BELOW).exact


def test_an_exact_publication_search_makes_sentence_searches_needless(engine):
    assert engine.data.publication_index.settings.exact  # a small corpus
    data, sentences, publications = spied(engine)
    query = Query(text=TEXT, k=5)
    recs = ranking.rank(data, query, engine.query_vectors(query))
    assert sentences.efforts == [] and publications.efforts
    assert [r.publication_id for r in recs] == [r.publication_id for r in engine.recommend(query)]


def approximate(data: ranking.EngineData) -> ranking.EngineData:
    """``data`` with both indexes searched by Annoy (as a large corpus's would be)."""

    def annoy(index: VectorIndex) -> VectorIndex:
        return index.with_settings(dataclasses.replace(index.settings, exact=False))

    return dataclasses.replace(
        data, publication_index=annoy(data.publication_index), sentence_index=annoy(data.sentence_index)
    )


def test_text_queries_search_harder_than_by_id_queries_when_approximate(engine, small_corpus, monkeypatch):
    # a by-id query excludes itself: keep that filter from being answered by scoring every row
    monkeypatch.setattr(ranking, "EXACT_FILTER_ROWS", 0)
    monkeypatch.setattr(ranking, "EXACT_FILTER_SHARE", 0.0)
    data = approximate(engine.data)
    sentences, publications = Spy(data.sentence_index), Spy(data.publication_index)
    data = dataclasses.replace(data, sentence_index=sentences, publication_index=publications)
    text = Query(text=TEXT, k=5)
    assert ranking.rank(data, text, engine.query_vectors(text))
    assert publications.efforts == [ranking.TEXT_EFFORT]
    assert sentences.efforts == [ranking.SENTENCE_EFFORT]  # one sentence: one search for extra candidates
    publications.efforts.clear()
    sentences.efforts.clear()
    by_id = Query(publication_id=small_corpus[0].id, k=5)
    assert ranking.rank(data, by_id, engine.query_vectors(by_id))
    assert publications.efforts == [1.0] and sentences.efforts == []
