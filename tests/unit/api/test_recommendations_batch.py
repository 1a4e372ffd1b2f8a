"""API 1.1: like/unlike, diversity, min_score, offset on POST /v1/recommendations, and
POST /v1/recommendations/batch (envelope, per-query errors, async)."""

from __future__ import annotations

import pytest

from recsys import protocol
from recsys.errors import NoEngine, UnknownPublication

from .conftest import recommend_result

TEXT = "Neural networks classify images."


def post(h, body, path="/v1/recommendations", headers=None):
    return h.client.simulate_post(path, json=body, headers=headers or {})


def batch(h, body, headers=None):
    return post(h, body, "/v1/recommendations/batch", headers)


def test_the_new_fields_reach_the_worker_normalized(harness):
    body = {"like": [{"text": f"  {TEXT} "}, {"publication_id": " p1 "}], "unlike": [{"publication_id": "p2"}],
            "diversity": 0.3, "min_score": 0.25, "offset": 5, "k": 5}

    assert post(harness, body).status_code == 200
    assert harness.actors.requests == [{
        "like": [{"text": TEXT}, {"publication_id": "p1"}], "unlike": [{"publication_id": "p2"}], "k": 5,
        "offset": 5, "min_score": 0.25, "diversity": 0.3, "strict": False, "min_generation": None,
    }]


def test_null_and_empty_new_fields_mean_none(harness):
    body = {"text": TEXT, "unlike": [], "diversity": None, "min_score": None, "offset": None}

    assert post(harness, body).status_code == 200
    assert harness.actors.requests == [{"text": TEXT, "k": 10, "strict": False, "min_generation": None}]


@pytest.mark.parametrize(("body", "field", "rule"), [
    ({"like": []}, "like", "'like' must hold 1 to 20 items, got 0"),
    ({"like": [{"text": "t"}] * 21}, "like", "'like' must hold 1 to 20 items, got 21"),
    ({"like": {"text": "t"}}, "like", "'like' must be a list of"),
    ({"like": [3]}, "like", "'like[0]' must be an object"),
    ({"like": [{"text": "t"}, {}]}, "like", "'like[1]' must hold exactly one of 'text' or 'publication_id' (got none"),
    ({"like": [{"text": "t", "publication_id": "p"}]}, "like", "(got 'text' and 'publication_id')"),
    ({"like": [{"title": "t"}]}, "like", "'like[0]' has unknown field(s) 'title'"),
    ({"like": [{"text": "   "}]}, "like", "'like[0].text' must be 1 to 50000 characters"),
    ({"like": [{"text": "?!"}]}, "like", "'like[0].text' must contain a letter or a digit"),
    ({"like": [{"text": 3}]}, "like", "'like[0].text' must be a string, got int"),
    ({"like": [{"publication_id": ""}]}, "like", "'like[0].publication_id' must be 1 to 256 characters"),
    ({"like": [{"publication_id": "x" * 257}]}, "like", "'like[0].publication_id' must be 1 to 256"),
    ({"text": TEXT, "like": [{"text": "t"}]}, "text", "exactly one of 'text', 'publication_id' or 'like' "
                                                       "(got 'text' and 'like')"),
    ({"text": TEXT, "unlike": [{"text": "t"}] * 21}, "unlike", "'unlike' must hold 0 to 20 items, got 21"),
    ({"text": TEXT, "unlike": [{"publication_id": 7}]}, "unlike", "'unlike[0].publication_id' must be a string"),
    ({"text": TEXT, "unlike": "p1"}, "unlike", "'unlike' must be a list of"),
    ({"text": TEXT, "diversity": 1.5}, "diversity", "'diversity' must be a number from 0 to 1, got 1.5"),
    ({"text": TEXT, "diversity": -0.1}, "diversity", "got -0.1"),
    ({"text": TEXT, "diversity": "0.3"}, "diversity", 'got "0.3"'),
    ({"text": TEXT, "min_score": "high"}, "min_score", "'min_score' must be a number, got \"high\""),
    ({"text": TEXT, "min_score": True}, "min_score", "got true"),
    ({"text": TEXT, "offset": -1}, "offset", "'offset' must be a whole number from 0 to 1000, got -1"),
    ({"text": TEXT, "offset": 1001}, "offset", "got 1001"),
    ({"text": TEXT, "offset": 5.0}, "offset", "got 5.0"),
])
def test_each_new_rule_gives_400_naming_the_field(harness, body, field, rule):
    response = post(harness, body)

    assert response.status_code == 400, response.json
    assert response.json["field"] == field
    assert rule in response.json["description"]
    assert harness.actors.requests == []


def test_an_unknown_liked_publication_is_a_404(harness):
    harness.actors.recommend = lambda request: protocol.error_result(UnknownPublication("publication 'zz' is not in"))

    response = post(harness, {"like": [{"publication_id": "zz"}]})

    assert response.status_code == 404
    assert response.json["code"] == "unknown_publication"


# -- batch ---------------------------------------------------------------------------


def test_a_batch_answers_every_query_in_order_from_one_task(harness):
    harness.install()
    queries = [{"text": TEXT, "k": 1}, {"publication_id": "p7"}, {"like": [{"text": TEXT}], "offset": 2}]

    response = batch(harness, {"queries": queries})

    assert response.status_code == 200
    assert response.json["engine"]["name"] == "stub"
    assert response.json["results"] == [{"recommendations": recommend_result(q)["recommendations"]} for q in queries]
    assert len(harness.actors.batches) == 1
    sent = harness.actors.batches[0]
    assert sent["min_generation"] == 1 and sent["strict"] is False
    assert sent["queries"] == [
        {"text": TEXT, "k": 1, "strict": False}, {"publication_id": "p7", "k": 10, "strict": False},
        {"like": [{"text": TEXT}], "k": 10, "offset": 2, "strict": False},
    ]


def test_a_bad_query_gets_its_own_error_item_and_the_others_their_answers(harness):
    def answer(request):
        if request.get("publication_id") == "zz":
            return protocol.error_result(UnknownPublication("publication 'zz' is not in this engine"))
        return recommend_result(request)

    harness.actors.recommend = answer
    queries = [{"text": TEXT, "k": 0}, {"text": TEXT, "k": 1}, {"publication_id": "zz"}, "not an object",
               {"text": TEXT, "limit": 3}]

    response = batch(harness, {"queries": queries})

    assert response.status_code == 200
    results = response.json["results"]
    assert len(results) == 5
    assert results[0]["error"]["code"] == "bad_request"
    assert results[0]["error"]["field"] == "k"
    assert "'k' must be a whole number from 1 to 100, got 0" in results[0]["error"]["message"]
    assert results[1] == {"recommendations": recommend_result({"k": 1})["recommendations"]}
    assert results[2]["error"]["code"] == "unknown_publication"
    assert "must be a JSON object" in results[3]["error"]["message"]
    assert results[4]["error"]["field"] == "limit"


@pytest.mark.parametrize(("body", "field", "rule"), [
    ([{"text": TEXT}], None, "the request body must be a JSON object, got list"),
    ({}, "queries", "'queries' must be a list of 1 to 100 request bodies, got nothing"),
    ({"queries": {"text": TEXT}}, "queries", "got dict"),
    ({"queries": []}, "queries", "'queries' must hold 1 to 100 request bodies, got 0"),
    ({"queries": [{"text": TEXT}] * 101}, "queries", "got 101"),
    ({"queries": [{"text": TEXT}], "k": 3}, "k", "unknown field(s) 'k'; allowed: 'queries'"),
])
def test_only_a_bad_envelope_is_a_400(harness, body, field, rule):
    response = batch(harness, body)

    assert response.status_code == 400
    assert response.json.get("field") == field
    assert rule in response.json["description"]
    assert harness.actors.batches == []


def test_a_batch_is_strict_when_one_of_its_queries_is(harness):
    assert batch(harness, {"queries": [{"text": TEXT}, {"text": TEXT, "strict": True}]}).status_code == 200
    assert harness.actors.batches[0]["strict"] is True


def test_a_batch_can_be_asynchronous_and_its_polled_result_has_every_item(harness):
    response = batch(harness, {"queries": [{"text": TEXT, "k": 1}, {"text": ""}]},
                     headers={"Prefer": "respond-async"})

    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "respond-async"
    url = response.json["status_url"]
    for _ in range(200):
        polled = harness.client.simulate_get(url).json
        if polled["status"] != "pending":
            break
        harness.broker.join(harness.settings.request_queue)
    assert polled["status"] == "succeeded"
    results = polled["result"]["results"]
    assert "recommendations" in results[0] and results[1]["error"]["code"] == "bad_request"


def test_a_batch_whose_task_fails_as_a_whole_answers_that_error(harness, monkeypatch):
    harness.actors.batches.clear()

    def failing(request):
        return protocol.error_result(NoEngine("no engine has been built yet"))

    monkeypatch.setattr(harness.actors, "recommend", failing)
    response = batch(harness, {"queries": [{"text": TEXT}]})

    assert response.status_code == 200  # a query's failure is its item, not the batch's
    assert response.json["results"][0]["error"]["code"] == "no_engine"
