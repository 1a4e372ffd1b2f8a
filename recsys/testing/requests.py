"""Conformance tests of the request fields of API 1.1: ``like``/``unlike``, ``min_score``,
``diversity``, ``offset``, and :meth:`Engine.recommend_many`; mixed into
:class:`recsys.testing.conformance.EngineConformance`, so every engine runs them with the
fixtures ``loaded_engine`` and ``corpus``."""

from __future__ import annotations

import pytest

from recsys.domain import Example, Publication, Query, Recommendation
from recsys.engine import Engine
from recsys.errors import RecsysError, UnknownPublication
from recsys.testing import checks
from recsys.testing.probes import spread

__all__ = ["RequestConformance"]


def _ids(recs: list[Recommendation]) -> list[str]:
    return [r.publication_id for r in recs]


def _text(corpus: list[Publication]) -> str:
    return checks.sentence_text(p.title for p in spread(corpus, 20))


class RequestConformance:
    """The request-field tests; mixed into EngineConformance."""

    def test_offset_pages_through_one_ranking(self, loaded_engine: Engine, corpus: list[Publication]) -> None:
        for base in (Query(text=_text(corpus), k=20), Query(publication_id=corpus[3].id, k=20)):
            whole = _ids(loaded_engine.recommend(base))
            page = _ids(loaded_engine.recommend(base.plain(k=5, offset=5)))
            assert page == whole[5:10], f"offset 5, k 5 gave {page}, ranks 6-10 are {whole[5:10]}"
            far = loaded_engine.recommend(base.plain(k=5, offset=len(corpus)))
            assert far == [], f"an offset past the corpus gave {_ids(far)}"

    def test_min_score_drops_lower_scores(self, loaded_engine: Engine, corpus: list[Publication]) -> None:
        base = Query(text=_text(corpus), k=10)
        whole = loaded_engine.recommend(base)
        assert len(whole) >= 3
        cut = whole[2].score
        kept = loaded_engine.recommend(base.plain(min_score=cut))
        assert kept, "min_score equal to the third score dropped everything"
        assert all(r.score >= cut for r in kept), [r.score for r in kept]
        assert _ids(kept) == [r.publication_id for r in whole if r.score >= cut]
        assert loaded_engine.recommend(base.plain(min_score=whole[0].score + 1.0)) == []

    def test_diversity_zero_is_the_ranking_and_more_reorders_the_same_candidates(
        self, loaded_engine: Engine, corpus: list[Publication]
    ) -> None:
        base = Query(text=_text(corpus), k=10)
        whole = _ids(loaded_engine.recommend(base))
        assert _ids(loaded_engine.recommend(base.plain(diversity=0.0))) == whole
        diverse = loaded_engine.recommend(base.plain(diversity=0.9))
        ids = _ids(diverse)
        assert len(ids) == len(whole) and len(set(ids)) == len(ids)
        assert ids[0] == whole[0], "the best result is chosen first whatever the diversity"
        wide = _ids(loaded_engine.recommend(base.plain(k=50)))
        assert set(ids) <= set(wide), "diverse results come from the over-fetched candidates"

    def test_like_never_returns_the_liked(
        self, loaded_engine: Engine, corpus: list[Publication], corpus_by_id: dict[str, Publication]
    ) -> None:
        liked = [p.id for p in spread(corpus, 3)]
        query = Query(like=tuple(Example(publication_id=i) for i in liked), k=10)
        recs = loaded_engine.recommend(query)
        assert recs, "like with three publications gave nothing"
        assert not set(_ids(recs)) & set(liked), f"liked publications returned: {_ids(recs)}"
        assert all(i in corpus_by_id for i in _ids(recs)), f"unknown ids in {_ids(recs)}"
        assert len(set(_ids(recs))) == len(recs), f"duplicates in {_ids(recs)}"
        scores = [r.score for r in recs]
        assert scores == sorted(scores, reverse=True), f"scores not best first: {scores}"

    def test_one_like_is_like_its_query(self, loaded_engine: Engine, corpus: list[Publication]) -> None:
        pub = corpus[7]
        by_id = _ids(loaded_engine.recommend(Query(publication_id=pub.id, k=5)))
        liked = _ids(loaded_engine.recommend(Query(like=(Example(publication_id=pub.id),), k=5)))
        assert liked == by_id
        text = pub.title
        assert _ids(loaded_engine.recommend(Query(like=(Example(text=text),), k=5))) == _ids(
            loaded_engine.recommend(Query(text=text, k=5)))

    def test_unlike_pushes_away(self, loaded_engine: Engine, corpus: list[Publication]) -> None:
        base = Query(text=_text(corpus), k=10)
        whole = loaded_engine.recommend(base)
        assert len(whole) >= 2
        top = whole[0].publication_id
        pushed = loaded_engine.recommend(base.plain(unlike=(Example(publication_id=top),)))
        assert top not in _ids(pushed), "an unliked publication is never returned"

    def test_unknown_example_is_an_error(self, loaded_engine: Engine, corpus: list[Publication]) -> None:
        for query in (Query(like=(Example(publication_id="no-such-publication"),)),
                      Query(text=corpus[0].title, unlike=(Example(publication_id="no-such-publication"),))):
            with pytest.raises(UnknownPublication):
                loaded_engine.recommend(query)

    def test_recommend_many_answers_each_in_order(self, loaded_engine: Engine, corpus: list[Publication]) -> None:
        queries = [Query(text=corpus[0].title, k=3), Query(publication_id="no-such-publication"),
                   Query(publication_id=corpus[1].id, k=4, offset=2),
                   Query(like=(Example(text=corpus[2].title), Example(publication_id=corpus[3].id)), k=3)]
        answers = loaded_engine.recommend_many(queries)
        assert len(answers) == len(queries)
        assert isinstance(answers[1], UnknownPublication)
        for query, answer in zip(queries, answers, strict=True):
            if not isinstance(answer, RecsysError):
                assert _ids(answer) == _ids(loaded_engine.recommend(query))
