"""POST /v1/recommendations: validation, the message sent, waiting, async mode, task errors."""

from __future__ import annotations

import json
import threading

import pytest

from recsys import protocol
from recsys.domain import MAX_TEXT_CHARS
from recsys.errors import NoEngine

from .conftest import recommend_result

TEXT = "Neural networks classify images."


def post(h, body, headers=None, raw=None):
    if raw is not None:
        return h.client.simulate_post("/v1/recommendations", body=raw, headers=headers or {})
    return h.client.simulate_post("/v1/recommendations", json=body, headers=headers or {})


def test_round_trip_answers_the_workers_result_and_sends_the_validated_request(harness):
    # Given an engine at generation 1 and a worker
    harness.install()

    # When a client asks with padding around its text
    response = post(harness, {"text": f"  {TEXT}\n", "k": 3, "label": "ml"})

    # Then the worker's result comes back, and the message held the normalized request
    assert response.status_code == 200
    assert response.json == recommend_result({"k": 3})
    assert harness.actors.requests == [
        {"text": TEXT, "k": 3, "label": "ml", "strict": False, "min_generation": 1}
    ]


def test_defaults_and_no_engine_give_k_10_strict_false_and_min_generation_none(harness):
    response = post(harness, {"publication_id": "p7"})

    assert response.status_code == 200
    assert harness.actors.requests == [{"publication_id": "p7", "k": 10, "strict": False, "min_generation": None}]


def test_every_filter_reaches_the_worker(harness):
    body = {"text": TEXT, "k": 5, "exclude_ids": ["a", "b"], "label": "x", "year_min": 2000, "year_max": 2010,
            "strict": True}

    assert post(harness, body).status_code == 200
    assert harness.actors.requests == [{**body, "min_generation": None}]


def test_null_filters_mean_no_filter(harness):
    body = {"text": TEXT, "exclude_ids": None, "label": None, "year_min": None, "year_max": None,
            "lexical_weight": None}

    assert post(harness, body).status_code == 200
    assert harness.actors.requests == [{"text": TEXT, "k": 10, "strict": False, "min_generation": None}]


@pytest.mark.parametrize("body", [
    {"text": "x" * MAX_TEXT_CHARS},
    {"text": " " * 10 + "x" * MAX_TEXT_CHARS + " " * 10},
    {"text": TEXT, "k": 1},
    {"text": TEXT, "k": 100},
    {"text": TEXT, "year_min": 0, "year_max": 9999},
    {"text": TEXT, "year_min": 2000, "year_max": 2000},
    {"publication_id": "x" * 256},
    {"text": TEXT, "exclude_ids": ["x"] * 1000},
    {"text": TEXT, "lexical_weight": 0},
    {"text": TEXT, "lexical_weight": 1},
    {"text": TEXT, "lexical_weight": 0.35},
])
def test_bodies_at_the_limits_are_accepted(harness, body):
    assert post(harness, body).status_code == 200


@pytest.mark.parametrize(("body", "field", "rule"), [
    ({"text": TEXT, "publication_id": "p"}, "text", "exactly one of 'text', 'publication_id' or 'like' "
                                                "(got 'text' and 'publication_id')"),
    ({"k": 3}, "text", "exactly one of 'text', 'publication_id' or 'like' (got none of them)"),
    ({"text": ""}, "text", "1 to 50000 characters after trimming whitespace, got 0"),
    ({"text": " \n\t "}, "text", "1 to 50000 characters after trimming whitespace, got 0"),
    ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "text", "got 50001"),
    ({"text": 42}, "text", "'text' must be a string, got int"),
    ({"text": None}, "text", "'text' must be a string, got null"),
    ({"publication_id": "  "}, "publication_id", "1 to 256 characters"),
    ({"publication_id": "x" * 257}, "publication_id", "1 to 256 characters"),
    ({"publication_id": ["p"]}, "publication_id", "must be a string, got list"),
    ({"text": TEXT, "k": 0}, "k", "'k' must be a whole number from 1 to 100, got 0"),
    ({"text": TEXT, "k": 101}, "k", "got 101"),
    ({"text": TEXT, "k": -1}, "k", "got -1"),
    ({"text": TEXT, "k": 2.5}, "k", "got 2.5"),
    ({"text": TEXT, "k": 10.0}, "k", "'k' must be a whole number from 1 to 100, got 10.0"),
    ({"text": TEXT, "year_min": 2000.0}, "year_min", "got 2000.0"),
    ({"text": TEXT, "k": "5"}, "k", 'got "5"'),
    ({"text": TEXT, "k": True}, "k", "got true"),
    ({"text": TEXT, "k": None}, "k", "got null"),
    ({"text": TEXT, "exclude_ids": "p1"}, "exclude_ids", "must be a list of publication ids, got str"),
    ({"text": TEXT, "exclude_ids": [1]}, "exclude_ids", "'exclude_ids[0]' must be a string of 1 to 256"),
    ({"text": TEXT, "exclude_ids": ["ok", ""]}, "exclude_ids", "'exclude_ids[1]'"),
    ({"text": TEXT, "exclude_ids": ["x"] * 1001}, "exclude_ids", "holds 1001 ids; at most 1000"),
    ({"text": TEXT, "label": ""}, "label", "'label' must be 1 to 256 characters"),
    ({"text": TEXT, "label": 3}, "label", "'label' must be a string, got int"),
    ({"text": TEXT, "year_min": -1}, "year_min", "from 0 to 9999, got -1"),
    ({"text": TEXT, "year_max": 10000}, "year_max", "from 0 to 9999, got 10000"),
    ({"text": TEXT, "year_min": "2000"}, "year_min", 'got "2000"'),
    ({"text": TEXT, "year_min": 2011, "year_max": 2010}, "year_min", "must not be greater than 'year_max'"),
    ({"text": TEXT, "lexical_weight": 1.01}, "lexical_weight",
     "'lexical_weight' must be a number from 0 to 1, got 1.01"),
    ({"text": TEXT, "lexical_weight": -1}, "lexical_weight", "got -1"),
    ({"text": TEXT, "lexical_weight": "0.3"}, "lexical_weight", 'got "0.3"'),
    ({"text": TEXT, "lexical_weight": False}, "lexical_weight", "got false"),
    ({"text": TEXT, "strict": "yes"}, "strict", "'strict' must be true or false"),
    ({"text": TEXT, "strict": 1}, "strict", "'strict' must be true or false"),
    ({"text": TEXT, "limit": 3}, "limit", "unknown field(s) 'limit'; allowed: text, publication_id, like, "
                                          "unlike, k, offset"),
    ({"text": TEXT, "zeta": 1, "alpha": 2}, "alpha", "unknown field(s) 'alpha', 'zeta'"),
    ({"text": TEXT, "min_generation": 3}, "min_generation", "unknown field(s) 'min_generation'"),
])
def test_each_rule_gives_400_naming_the_field_and_the_rule(harness, body, field, rule):
    response = post(harness, body)

    assert response.status_code == 400
    assert response.json["title"] == "Invalid request"
    assert response.json["field"] == field
    assert rule in response.json["description"]
    assert harness.actors.requests == []  # nothing was sent


@pytest.mark.parametrize("text", [
    "\x00", "\x00\x00 \x00", "\u200b\u200c\u200d\u2060\ufeff", "\u00ad", "\x07\x1b\x7f", "\u202e\u2066",
    "!!! ... ???", "_", "\u0301\u0308",
])
def test_a_text_without_letters_or_digits_is_400_text_has_no_words(harness, text):
    response = post(harness, {"text": text})

    assert response.status_code == 400
    assert response.json["field"] == "text"
    assert "the text has no words: 'text' must contain a letter or a digit" in response.json["description"]
    assert harness.actors.requests == []


@pytest.mark.parametrize("text", ["x", "7", "\u200bword\u200b", "\x00a", "神経", "Ωμέγα", "٣", "¾"])
def test_a_text_with_a_letter_or_a_digit_anywhere_is_accepted(harness, text):
    assert post(harness, {"text": text}).status_code == 200


@pytest.mark.parametrize(("body", "field", "rule"), [
    ({"k": 0, "text": 42}, "text", "'text' must be a string"),
    ({"text": TEXT, "strict": "no", "k": 0}, "k", "'k' must be"),
    ({"text": TEXT, "exclude_ids": [1, ""], "label": ""}, "exclude_ids", "'exclude_ids[0]'"),
    ({"text": TEXT, "publication_id": "p", "k": 0}, "text", "exactly one of"),
    ({"text": TEXT, "other": 1, "k": 0}, "other", "unknown field(s) 'other'"),
    ({"text": TEXT, "year_min": 2011, "year_max": 2010, "k": 0}, "k", "'k' must be"),
])
def test_of_several_faults_the_first_in_the_schemas_order_is_reported(harness, body, field, rule):
    response = post(harness, body)

    assert response.status_code == 400
    assert response.json["field"] == field
    assert rule in response.json["description"]


@pytest.mark.parametrize("raw", [b'{"text": "t", "k": 10.0}', b'{"text": "t", "k": 1e1}', b'{"text": "t", "k": true}'])
def test_k_must_be_a_json_integer_not_a_float_or_a_boolean(harness, raw):
    response = post(harness, None, headers={"Content-Type": "application/json"}, raw=raw)

    assert response.status_code == 400
    assert response.json["field"] == "k"
    assert harness.actors.requests == []


@pytest.mark.parametrize(("raw", "rule"), [
    (b"[1, 2]", "must be a JSON object, got list"),
    (b'"text"', "must be a JSON object, got str"),
    (b"null", "must be a JSON object, got null"),
    (b"{not json", "not valid JSON"),
    (b"", "the request body is empty"),
    (b"[" * 100_000, "not valid JSON"),
])
def test_a_body_that_is_not_a_json_object_is_400(harness, raw, rule):
    response = post(harness, None, headers={"Content-Type": "application/json"}, raw=raw)

    assert response.status_code == 400
    assert rule in response.json["description"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
def test_a_body_that_is_not_declared_json_is_415(harness, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = post(harness, None, headers=headers, raw=json.dumps({"text": TEXT}).encode())

    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json["description"]


def test_json_with_a_charset_parameter_is_accepted(harness):
    response = post(harness, None, headers={"Content-Type": "application/json; charset=utf-8"},
                    raw=json.dumps({"text": TEXT}).encode())

    assert response.status_code == 200


def test_a_body_over_the_limit_is_413(make_harness):
    h = make_harness(max_body_bytes=2048)
    response = post(h, {"text": "x" * 3000})

    assert response.status_code == 413
    assert "larger than 2048 bytes" in response.json["description"]
    assert h.actors.requests == []


def test_respond_async_answers_202_with_a_task_to_poll(harness):
    response = post(harness, {"text": TEXT, "k": 2}, headers={"Prefer": "wait=10, respond-async"})

    assert response.status_code == 202
    task_id = response.json["task_id"]
    assert response.json["status_url"] == f"/v1/tasks/{task_id}"
    assert response.headers["location"] == f"/v1/tasks/{task_id}"
    assert response.headers["preference-applied"] == "respond-async"
    harness.broker.join(harness.settings.request_queue)
    harness.worker.join()
    status = harness.client.simulate_get(f"/v1/tasks/{task_id}")
    assert status.json == {"task_id": task_id, "status": "succeeded", "result": recommend_result({"k": 2})}


def test_an_answered_result_is_not_kept_but_an_async_one_is(harness):
    # Given one request answered within its call and one sent with respond-async
    assert post(harness, {"text": TEXT, "k": 1}).status_code == 200
    polled = post(harness, {"text": TEXT, "k": 1}, headers={"Prefer": "respond-async"}).json["task_id"]
    harness.broker.join(harness.settings.request_queue)
    harness.worker.join()
    # Then only the result whose id was handed out is still held (nobody can ask for the other)
    assert len(harness.backend) == 1
    assert harness.client.simulate_get(f"/v1/tasks/{polled}").json["status"] == "succeeded"


def test_a_worker_that_does_not_answer_in_time_gives_504_with_the_task_to_poll(harness):
    # Given a worker that blocks until released (the API waits 1 s)
    def slow(request):
        harness.actors.release.wait(10)
        return recommend_result(request)

    harness.actors.recommend = slow

    response = post(harness, {"text": TEXT, "k": 1})

    assert response.status_code == 504
    task_id = response.json["task_id"]
    assert response.json["status_url"] == f"/v1/tasks/{task_id}"
    assert response.headers["location"] == f"/v1/tasks/{task_id}"
    assert "no worker answered within 1 s" in response.json["description"]
    assert harness.client.simulate_get(f"/v1/tasks/{task_id}").json["status"] == "pending"

    # When the worker finishes later, the task has its result
    harness.actors.release.set()
    harness.broker.join(harness.settings.request_queue)
    harness.worker.join()
    assert harness.client.simulate_get(f"/v1/tasks/{task_id}").json["status"] == "succeeded"


@pytest.mark.parametrize(("code", "status", "words"), [
    ("no_engine", 503, "no engine has been built yet"),
    ("unknown_publication", 404, "no publication 'p9'"),
    ("bad_request", 400, "no publication 'p9'"),
    ("internal", 500, "no publication 'p9'"),
    ("unavailable", 503, "no publication 'p9'"),
    ("engine_load", 503, "no publication 'p9'"),
    ("timeout", 504, "no publication 'p9'"),
    ("something_new", 500, "no publication 'p9'"),
])
def test_error_results_map_to_their_http_status(harness, code, status, words):
    harness.actors.recommend = lambda request: {"error": {"code": code, "message": "no publication 'p9'"}}

    response = post(harness, {"publication_id": "p9"})

    assert response.status_code == status
    assert words in response.json["description"]
    assert response.json["code"] == code


def test_no_engine_says_how_to_start_one(harness):
    harness.actors.recommend = lambda request: protocol.error_result(NoEngine("no engine yet"))

    response = post(harness, {"text": TEXT})

    assert response.status_code == 503
    assert "POST /v1/engine/builds" in response.json["description"]
    assert response.headers["retry-after"]


def test_an_actor_that_raises_is_a_500_naming_the_failure(harness):
    def boom(request):
        raise RuntimeError("index file is corrupt")

    harness.actors.recommend = boom

    response = post(harness, {"text": TEXT})

    assert response.status_code == 500
    assert "RuntimeError: index file is corrupt" in response.json["description"]


def test_concurrent_requests_each_get_their_own_result(harness):
    harness.actors.recommend = lambda request: recommend_result(request) | {"echo": request["text"]}
    answers: dict[int, object] = {}

    def ask(i):
        answers[i] = post(harness, {"text": f"query {i}"}).json["echo"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert answers == {i: f"query {i}" for i in range(8)}
