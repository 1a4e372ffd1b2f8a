"""recsys.evaluate and `recsys evaluate`: the quality measures on a labelled corpus."""

from __future__ import annotations

import json

import pytest

from recsys.cli.main import main
from recsys.domain import Publication, Query, Recommendation
from recsys.evaluate import LIKE_SIZE, draw_queries, evaluate, known_item, like, withhold_titles
from recsys.sources import DemoSource, load_publications
from recsys_engine_lexical import LexicalEngine


@pytest.fixture(scope="module")
def corpus() -> list[Publication]:
    return load_publications(DemoSource())


def test_queries_are_drawn_with_their_seed(corpus):
    first, again, other = (draw_queries(corpus, seed=s, by_id=50, text=40, known=30) for s in (7, 7, 8))
    assert first == again and first != other
    assert (len(first.by_id), len(first.text), len(first.known)) == (50, 40, 30)
    labels = {p.id: p.label for p in corpus}
    assert all(labels[pub_id] == label for pub_id, label in first.by_id)
    for sentence, label, source in first.text:  # a sentence of the source's abstract
        assert sentence in next(p.abstract for p in corpus if p.id == source) and labels[source] == label


def test_known_item_queries_run_against_an_index_without_titles(corpus):
    withheld = withhold_titles(corpus)
    assert all(p.title == "" for p in withheld) and [p.abstract for p in withheld] == [p.abstract for p in corpus]
    engine = LexicalEngine()
    engine.fit(withheld)
    queries = draw_queries(corpus, seed=1, known=60).known
    measured = known_item(engine, queries)
    assert measured["queries"] == 60
    assert 0.5 < measured["recall@1"] <= measured["recall@10"] <= 1.0
    assert measured["recall@1"] <= measured["mrr@10"] <= measured["recall@10"]


class Shuffled(LexicalEngine):
    """The lexical engine's results for a random other publication: a bad engine."""

    def recommend(self, query: Query) -> list[Recommendation]:
        if query.publication_id is not None:
            query = Query(publication_id=sorted(self.ids)[hash(query.publication_id) % len(self.ids)], k=query.k)
        return super().recommend(query)


def test_a_worse_engine_measures_worse(corpus):
    queries = draw_queries(corpus, seed=3, by_id=100, text=50, known=50)
    good = LexicalEngine()
    good.fit(corpus)
    bad = Shuffled()
    bad.fit(corpus)
    bad.ids = [p.id for p in corpus]
    good_m, bad_m = evaluate(good, queries), evaluate(bad, queries)
    assert good_m["known_item"] is None and good_m["by_id"]["queries"] == 100
    assert good_m["by_id"]["p@10"] > bad_m["by_id"]["p@10"] + 0.2


def test_the_command_prints_engines_side_by_side_as_json(capsys):
    assert main(["-q", "evaluate", "--engine", "lexical", "--queries", "40", "--sample", "150", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["corpus"]["publications"] == 150 and report["queries"]["by_id"] == 40
    lexical = report["engines"]["lexical"]
    assert lexical["by_id"]["p@10"] > 0.5 and lexical["known_item"]["recall@1"] > 0.5
    assert main(["-q", "evaluate", "--engine", "lexical", "--queries", "40", "--sample", "150"]) == 0
    assert "by-id p@10" in capsys.readouterr().out


def test_a_corpus_without_shared_labels_is_refused(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "title": f"t {i}", "abstract": f"words {i}."}) + "\n"
                            for i in range(5)))
    assert main(["evaluate", "--engine", "lexical", "--source", str(path)]) != 0
    assert "no label that two publications share" in capsys.readouterr().err


def test_like_groups_are_drawn_apart_and_leave_the_other_queries_unchanged(corpus):
    plain = draw_queries(corpus, seed=5, by_id=30, text=30, known=30)
    with_like = draw_queries(corpus, seed=5, by_id=30, text=30, known=30, like=20)
    assert (plain.by_id, plain.text, plain.known) == (with_like.by_id, with_like.text, with_like.known)
    assert plain.like == () and len(with_like.like) == 20
    labels = {p.id: p.label for p in corpus}
    for ids, label in with_like.like:
        assert len(set(ids)) == len(ids) == LIKE_SIZE and all(labels[i] == label for i in ids)


def test_the_like_measure_compares_the_combinations_with_the_liked_alone(corpus):
    engine = LexicalEngine()
    engine.fit(corpus)
    measured = like(engine, draw_queries(corpus, seed=2, by_id=0, text=0, known=0, like=30).like)
    assert measured["queries"] == 30 and measured["size"] == LIKE_SIZE
    assert measured["mean_single_p@10"] <= measured["best_single_p@10"]
    # the measured choice: averaging the examples' vectors beats the best of them alone, and best-score
    assert measured["p@10"] >= measured["best_single_p@10"] and measured["p@10"] >= measured["best_score_p@10"]


def test_the_command_reports_the_like_measure(capsys):
    assert main(["-q", "evaluate", "--engine", "lexical", "--queries", "20", "--sample", "150"]) == 0
    out = capsys.readouterr().out
    assert "like (same-label p@10 of 3 liked publications)" in out and "best-score" in out
