"""Domain types: record validation, query rules and filters, JSON shapes."""

from __future__ import annotations

import pytest

from recsys.domain import MAX_K, Evidence, Example, Publication, Query, Recommendation
from recsys.errors import InvalidQuery, InvalidRecord


def test_publication_from_a_full_record():
    pub = Publication.from_dict(
        {"id": 7, "title": " T ", "abstract": "A.", "full_text": "F.", "label": "x", "year": "2020",
         "authors": "Ann Lee; Bo Chen", "url": "https://example.org/7"}
    )
    assert pub.id == "7" and pub.title == "T" and pub.text == "F." and pub.year == 2020
    assert pub.authors == ("Ann Lee", "Bo Chen")
    assert Publication.from_dict(pub.to_dict()) == pub
    assert pub.body == "T\n\nA.\n\nF."


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"title": "t", "abstract": "a"}, "missing 'id'"),
        ({"id": "1", "abstract": "a"}, "has no 'title'"),
        ({"id": "1", "title": "t"}, "neither 'abstract' nor 'text'"),
        ({"id": "1", "title": "t", "abstract": "a", "year": "soon"}, "non-numeric 'year'"),
        ({"id": "1", "title": ["t"], "abstract": "a"}, "'title' must be a string"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_invalid_records_say_what_is_wrong(record, message):
    with pytest.raises(InvalidRecord, match=message):
        Publication.from_dict(record)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of"),
        ({"text": "a", "publication_id": "b"}, "exactly one of"),
        ({"text": "   "}, "'text' is empty"),
        ({"text": "x" * 50_001}, "longer than 50000"),
        ({"text": "\x00\u200b !"}, "the text has no words"),
        ({"publication_id": "p" * 257}, "'publication_id' is longer than 256"),
        ({"text": "a", "exclude_ids": [str(i) for i in range(1001)]}, "holds 1001 ids; at most 1000"),
        ({"text": "a", "label": ""}, "'label' must be 1 to 256"),
        ({"text": "a", "year_min": -1}, "'year_min' must be a whole number from 0 to 9999"),
        ({"text": "a", "year_max": 2000.0}, "'year_max' must be a whole number"),
        ({"text": "a", "k": 0}, "'k' must be"),
        ({"text": "a", "k": MAX_K + 1}, "'k' must be"),
        ({"text": "a", "k": True}, "'k' must be"),
        ({"text": "a", "year_min": 2020, "year_max": 2010}, "greater than"),
        ({"text": "a", "lexical_weight": 1.5}, "'lexical_weight' must be a number from 0 to 1"),
        ({"text": "a", "lexical_weight": -0.1}, "'lexical_weight' must be a number from 0 to 1"),
        ({"text": "a", "lexical_weight": True}, "'lexical_weight' must be a number"),
        ({"text": "a", "lexical_weight": "0.5"}, "'lexical_weight' must be a number"),
        ({"like": [{"text": "a"}], "text": "b"}, "exactly one of 'text', 'publication_id' or 'like'"),
        ({"like": [{"text": "a"}] * 21}, "'like' must hold 1 to 20 items, got 21"),
        ({"like": [{}]}, r"'like\[0\]' must hold exactly one of"),
        ({"like": [{"text": "a", "publication_id": "p"}]}, r"'like\[0\]' must hold exactly one of"),
        ({"like": [{"text": "a"}, {"text": "   "}]}, r"'like\[1\].text' is empty"),
        ({"like": [{"publication_id": " "}]}, r"'like\[0\].publication_id' must be 1 to 256"),
        ({"like": [{"title": "a"}]}, r"'like\[0\]' must be an object with a 'text' or a 'publication_id'"),
        ({"like": "a"}, "'like' must be a list"),
        ({"text": "a", "unlike": [{"text": "b"}] * 21}, "'unlike' must hold 0 to 20 items"),
        ({"text": "a", "diversity": 1.01}, "'diversity' must be a number from 0 to 1"),
        ({"text": "a", "diversity": True}, "'diversity' must be a number"),
        ({"text": "a", "min_score": "0.3"}, "'min_score' must be a number"),
        ({"text": "a", "min_score": float("nan")}, "'min_score' must be a number"),
        ({"text": "a", "offset": -1}, "'offset' must be a whole number from 0 to 1000"),
        ({"text": "a", "offset": 1001}, "'offset' must be a whole number from 0 to 1000"),
        ({"text": "a", "offset": 1.0}, "'offset' must be a whole number"),
    ],
)
def test_query_rules(kwargs, message):
    with pytest.raises(InvalidQuery, match=message):
        Query(**kwargs)


def test_like_examples_are_trimmed_and_their_ids_are_never_returned():
    q = Query(like=[{"text": " a text "}, {"publication_id": " p1 "}], unlike=[{"publication_id": "p2"}])
    assert q.like == (Example(text="a text"), Example(publication_id="p1"))
    assert q.example_ids == frozenset({"p1", "p2"})
    assert q.has_filters and not q.is_plain
    assert not q.accepts("p1", None, None) and not q.accepts("p2", None, None) and q.accepts("p3", None, None)
    assert Query(text="a").is_plain and not Query(text="a").has_filters


def test_the_new_fields_round_trip_through_dicts():
    body = {"like": [{"text": "a"}, {"publication_id": "p1"}], "unlike": [{"text": "b"}], "k": 5, "offset": 5,
            "min_score": 0.2, "diversity": 0.5}
    q = Query.from_dict(body)
    assert (q.offset, q.min_score, q.diversity) == (5, 0.2, 0.5)
    assert Query.from_dict(q.to_dict()) == q
    assert q.to_dict() == body
    assert Query.from_dict({"text": "a", "offset": None, "diversity": None, "unlike": None}).is_plain


def test_plain_keeps_the_filters_and_hides_the_examples():
    q = Query(like=[{"publication_id": "p1"}], label="bio", exclude_ids=frozenset({"p9"}), offset=3, diversity=0.2)
    plain = q.plain(text="t", k=50)
    assert plain.is_plain and plain.label == "bio" and plain.k == 50
    assert plain.exclude_ids == frozenset({"p1", "p9"})


def test_query_text_is_trimmed_and_limits_count_after_trimming():
    assert Query(text="  hello  ").text == "hello"
    assert Query(text=" " + "x" * 50_000 + " ").text == "x" * 50_000


def test_filters():
    q = Query(publication_id="p1", exclude_ids=frozenset({"p2"}), label="bio", year_min=2010, year_max=2015)
    assert q.has_filters
    assert q.accepts("p3", "bio", 2012)
    assert not q.accepts("p1", "bio", 2012)  # itself
    assert not q.accepts("p2", "bio", 2012)  # excluded
    assert not q.accepts("p3", "cs", 2012)
    assert not q.accepts("p3", "bio", 2009)
    assert not q.accepts("p3", "bio", None)
    assert Query(text="t").accepts("anything", None, None)


def test_query_dict_round_trip():
    q = Query.from_dict({"text": "t", "k": 3, "exclude_ids": ["b", "a"], "label": "x", "year_min": 2000})
    assert q.to_dict() == {"k": 3, "text": "t", "exclude_ids": ["a", "b"], "label": "x", "year_min": 2000}
    assert Query.from_dict(q.to_dict()) == q
    weighted = Query.from_dict({"text": "t", "lexical_weight": 1})
    assert weighted.lexical_weight == 1.0 and isinstance(weighted.lexical_weight, float)
    assert weighted.to_dict() == {"k": 10, "text": "t", "lexical_weight": 1.0}
    assert Query.from_dict(weighted.to_dict()) == weighted


def test_recommendation_shape():
    rec = Recommendation("p", "Title", 0.1234567, (Evidence("q", "s", 0.5),), label="x", year=2020)
    assert rec.to_dict() == {
        "publication_id": "p", "title": "Title", "score": 0.123457, "label": "x", "year": 2020,
        "evidence": [{"query_sentence": "q", "sentence": "s", "score": 0.5}],
    }
