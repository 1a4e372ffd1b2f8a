"""GET /v1/tasks/{id}, GET /v1/workers, GET /v1/engines."""

from __future__ import annotations

import json
import time
import uuid

import falcon.testing
import pytest

from recsys import protocol
from recsys.cluster import TASK_PREFIX, Heartbeats, RolloutProgress, Rollouts, WorkerInfo
from recsys.errors import UnknownPublication
from recsys.registry import Registry
from recsys.testing import stub_registry
from recsys_api.app import create_app

from .conftest import recommend_result

# -- tasks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", [
    str(uuid.uuid4()), "not-a-uuid", "x" * 200, "%00", "é", "..", "a b", "1" * 5000,
])
def test_an_unknown_task_is_404_whatever_the_form_of_its_id(harness, task_id):
    response = harness.client.simulate_get(f"/v1/tasks/{task_id}")

    assert response.status_code == 404
    assert response.json["title"] == "Unknown task"
    assert "expired" in response.json["description"]


def test_a_task_goes_from_pending_to_succeeded(make_harness):
    h = make_harness(worker=False)
    task_id = h.client.simulate_post("/v1/recommendations", json={"text": "hi", "k": 1},
                                     headers={"Prefer": "respond-async"}).json["task_id"]

    assert h.client.simulate_get(f"/v1/tasks/{task_id}").json == {"task_id": task_id, "status": "pending"}

    h.start_worker()
    h.broker.join(h.settings.request_queue)
    h.worker.join()

    assert h.client.simulate_get(f"/v1/tasks/{task_id}").json == {
        "task_id": task_id, "status": "succeeded", "result": recommend_result({"k": 1}),
    }


def test_a_failed_task_shows_its_error(harness):
    harness.actors.recommend = lambda request: protocol.error_result(UnknownPublication("no publication 'zz'"))
    task_id = harness.client.simulate_post("/v1/recommendations", json={"publication_id": "zz"},
                                           headers={"Prefer": "respond-async"}).json["task_id"]
    harness.broker.join(harness.settings.request_queue)
    harness.worker.join()

    assert harness.client.simulate_get(f"/v1/tasks/{task_id}").json == {
        "task_id": task_id, "status": "failed",
        "error": {"code": "unknown_publication", "message": "no publication 'zz'"},
    }


def test_an_expired_task_record_is_404(harness):
    task_id = harness.client.simulate_post("/v1/recommendations", json={"text": "hi"},
                                           headers={"Prefer": "respond-async"}).json["task_id"]
    harness.kv.delete(TASK_PREFIX + task_id)  # what the record's expiry does

    assert harness.client.simulate_get(f"/v1/tasks/{task_id}").status_code == 404


def test_every_started_task_is_recorded_with_the_result_ttl(make_harness):
    h = make_harness(worker=False, result_ttl=77)
    task_id = h.client.simulate_post("/v1/recommendations", json={"text": "hi"},
                                     headers={"Prefer": "respond-async"}).json["task_id"]

    record = json.loads(h.kv.get(TASK_PREFIX + task_id))
    assert record["actor"] == protocol.RECOMMEND_ACTOR
    assert record["queue"] == h.settings.request_queue
    _, expires = h.kv._data[TASK_PREFIX + task_id]
    assert 60 < expires - time.monotonic() <= 77


# -- workers ------------------------------------------------------------------------------------


def beat(h, pid, generation, queues=None):
    queues = [h.settings.request_queue, h.settings.build_queue] if queues is None else queues
    Heartbeats(h.kv, 5).beat(WorkerInfo(host="w1", pid=pid, queues=queues, generation=generation,
                                        version=f"v{generation}"))


def workers(h):
    response = h.client.simulate_get("/v1/workers")
    assert response.status_code == 200
    return response.json


def test_without_an_engine_workers_are_listed_and_not_converged(harness):
    beat(harness, 1, None)

    body = workers(harness)

    assert body["generation"] is None
    assert body["version"] is None
    assert body["converged"] is False
    assert [(w["host"], w["pid"], w["generation"]) for w in body["workers"]] == [("w1", 1, None)]
    assert set(body["workers"][0]) == {"host", "pid", "generation", "version", "queues", "seen_at", "protocol",
                                       "features", "recsys_version"}


def test_converged_only_when_every_serving_worker_has_the_current_generation(harness):
    installed = harness.install()
    assert workers(harness)["converged"] is False  # no worker at all

    beat(harness, 1, installed.generation)
    beat(harness, 2, None)
    assert workers(harness)["converged"] is False

    beat(harness, 2, installed.generation)
    body = workers(harness)
    assert body["converged"] is True
    assert body["generation"] == installed.generation
    assert body["version"] == installed.version


def test_a_worker_that_only_builds_does_not_hold_back_convergence(harness):
    installed = harness.install()
    beat(harness, 1, installed.generation)
    beat(harness, 2, None, queues=[harness.settings.build_queue])

    assert workers(harness)["converged"] is True


def test_each_machine_s_last_rollout_is_listed_by_host(harness):
    installed = harness.install()
    rollouts = Rollouts(harness.kv)
    rollouts.report(RolloutProgress(generation=1, version=installed.version, manifest_sha256=installed.manifest_sha256,
                                    state="fetching", files_needed=3, files_fetched=1, bytes_needed=3000,
                                    bytes_fetched=1000, bytes_reused=9000, host="w2", pid=7))
    rollouts.report(RolloutProgress(generation=1, version=installed.version, state="done", host="w1", pid=3))
    harness.kv.set("recsys:rollout:broken", "{not json", ttl=60)

    body = workers(harness)

    assert [(r["host"], r["state"]) for r in body["rollouts"]] == [("w1", "done"), ("w2", "fetching")]
    w2 = body["rollouts"][1]
    assert (w2["bytes_fetched"], w2["bytes_needed"], w2["bytes_reused"]) == (1000, 3000, 9000)
    assert w2["manifest_sha256"] == installed.manifest_sha256
    assert set(w2) == {"host", "pid", "generation", "version", "manifest_sha256", "state", "files_needed",
                       "files_fetched", "bytes_needed", "bytes_fetched", "bytes_reused", "started_at", "updated_at",
                       "seconds", "error", "data_dir"}


def test_without_rollouts_the_list_is_empty(harness):
    assert workers(harness)["rollouts"] == []


# -- engines ------------------------------------------------------------------------------------


def test_engines_lists_the_registry_records_without_loading_them(harness):
    records = stub_registry().records()
    app = create_app(harness.settings, broker=harness.broker, result_backend=harness.backend, kv=harness.kv,
                     archive_store=harness.store, broadcaster=harness.broadcaster, registry_records=records,
                     )
    body = falcon.testing.TestClient(app).simulate_get("/v1/engines").json

    assert body["default"] == harness.settings.engine
    assert body["engines"] == [r.to_dict() for r in records]
    assert body["engines"][0]["name"] == "stub"


def test_engines_defaults_to_the_installed_entry_points(make_harness):
    h = make_harness(create=False)
    app = create_app(h.settings, broker=h.broker, result_backend=h.backend, kv=h.kv, archive_store=h.store,
                     broadcaster=h.broadcaster)
    names = [e["name"] for e in falcon.testing.TestClient(app).simulate_get("/v1/engines").json["engines"]]
    assert names == Registry.discover(load=False).names()
