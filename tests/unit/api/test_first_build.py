"""POST /v1/recommendations while the first engine is being built: a 503 that says so,
with the build's task link (not "start a build", which contradicted it)."""

from __future__ import annotations

from recsys import protocol
from recsys.cluster import BuildLock
from recsys.errors import NoEngine

from .conftest import AUTH

TEXT = "Neural networks classify images."


def post(h, body):
    return h.client.simulate_post("/v1/recommendations", json=body)


def test_while_the_first_build_is_queued_a_recommendation_is_a_503_with_its_task_link(make_harness):
    # Given no engine, and the first build sent (its worker not running yet)
    h = make_harness(worker=False)
    started = h.client.simulate_post("/v1/engine/builds", headers=AUTH)
    assert started.status_code == 202
    task_id = started.json["task_id"]

    # When a client asks for recommendations
    response = post(h, {"text": TEXT})

    # Then the answer says a build is running and links its task, and no recommend is sent
    assert response.status_code == 503
    body = response.json
    assert body["code"] == "no_engine"
    assert (body["task_id"], body["status_url"]) == (task_id, f"/v1/tasks/{task_id}")
    assert "being built" in body["description"] and task_id in body["description"]
    assert "POST /v1/engine/builds" not in body["description"]
    assert response.headers["retry-after"] == "5"
    assert h.queued(h.settings.request_queue) == []
    # And the link works
    assert h.client.simulate_get(body["status_url"]).json["status"] == "pending"


def test_while_the_first_build_runs_the_answer_links_the_build_holding_the_lock(harness):
    BuildLock(harness.kv, 60).acquire(message_id="build-42", host="builder", pid=7)

    response = post(harness, {"publication_id": "p1"})

    assert response.status_code == 503
    assert (response.json["task_id"], response.json["status_url"]) == ("build-42", "/v1/tasks/build-42")
    assert harness.actors.requests == []


def test_a_worker_answering_no_engine_while_the_build_starts_gets_the_task_link_too(harness):
    # Given a worker that answers no_engine, and a build that took the lock meanwhile
    def no_engine(request):
        BuildLock(harness.kv, 60).acquire(message_id="build-43")
        return protocol.error_result(NoEngine("no engine yet"))

    harness.actors.recommend = no_engine
    # (the lock is free when the API checks, so the request is sent)

    response = post(harness, {"text": TEXT})

    assert response.status_code == 503
    assert response.json["task_id"] == "build-43"
    assert "being built" in response.json["description"]


def test_without_a_build_no_engine_still_says_how_to_start_one(harness):
    harness.actors.recommend = lambda request: protocol.error_result(NoEngine("no engine yet"))

    response = post(harness, {"text": TEXT})

    assert response.status_code == 503
    assert "POST /v1/engine/builds" in response.json["description"]
    assert "task_id" not in response.json


def test_with_an_engine_a_running_build_does_not_stop_recommendations(harness):
    harness.install()
    BuildLock(harness.kv, 60).acquire(message_id="build-44")

    assert post(harness, {"text": TEXT}).status_code == 200
