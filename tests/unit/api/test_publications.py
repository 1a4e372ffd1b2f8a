"""POST /v1/publications and the change endpoints: validation, durability before the
202, the apply sent, statuses following uploads and rollbacks, the resender."""

from __future__ import annotations

from datetime import timedelta

import pytest

from recsys import protocol
from recsys.archive import pack
from recsys.changes import ChangeLog
from recsys.cluster import BuildLock, TaskRecords
from recsys.engine import EngineMetadata
from recsys_api.live import LiveUpdates
from recsys_api.tasks import TaskClient

from .conftest import AUTH, BASE_TIME

PUB = {"id": "new-1", "title": "Dark matter halos", "abstract": "We study halos of dwarf galaxies."}


def push(harness, body, headers=AUTH):
    return harness.client.simulate_post("/v1/publications", json=body, headers=headers)


def upload_apply(harness, minutes, changes_through, kind="apply"):
    content = harness.tmp / f"apply-{minutes}"
    content.mkdir(parents=True)
    (content / "data.json").write_bytes(f'{{"m": {minutes}}}'.encode())
    out = harness.tmp / f"apply-{minutes}.zip"
    pack(content, out, engine="stub", metadata=EngineMetadata(publications=1, sentences=1),
         created_at=BASE_TIME + timedelta(minutes=minutes), kind=kind, changes_through=changes_through)
    return harness.upload(out)


def test_a_push_is_recorded_durably_answers_202_and_sends_an_apply(make_harness):
    harness = make_harness(worker=False)
    response = push(harness, {"upsert": [PUB], "delete": ["old-9"]})
    assert response.status_code == 202, response.json
    assert response.json == {"change_id": 1, "status": "pending", "status_url": "/v1/publications/changes/1"}
    assert response.headers["location"] == "/v1/publications/changes/1"
    # durable: another process opening the same log sees it
    assert ChangeLog(harness.settings.data_dir).get(1)["upserts"] == ["new-1"]
    assert [m.actor_name for m in harness.queued(harness.settings.build_queue)] == [protocol.APPLY_ACTOR]


def test_a_push_needs_the_token(harness):
    assert push(harness, {"upsert": [PUB]}, headers={}).status_code == 401


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"upsert": [PUB, {"id": "x", "abstract": "no title"}]}, "upsert[1].title", "upsert[1]: publication 'x'"),
    ({"upsert": [{"title": "t", "abstract": "a"}]}, "upsert[0].id", "missing 'id'"),
    ({"upsert": [{"id": "x", "title": "t"}]}, "upsert[0].abstract", "neither 'abstract' nor 'text'"),
    ({"upsert": [{**PUB, "year": "soon"}]}, "upsert[0].year", "'year' must be a whole number"),
    ({"upsert": [PUB, PUB]}, "upsert[1].id", "upserted twice"),
    ({"upsert": [PUB], "delete": ["new-1"]}, "delete[0]", "both upserted and deleted"),
    ({"delete": [""]}, "delete[0]", "must be a publication id"),
    ({"delete": ["a"] * 1001}, "delete", "at most 1000"),
    ({}, "upsert", "the push is empty"),
    ({"upsert": [], "extra": 1}, "extra", "unknown field"),
])
def test_an_invalid_push_is_a_400_naming_the_record_and_the_field(harness, body, field, words):
    response = push(harness, body)
    assert response.status_code == 400
    assert response.json["field"] == field and response.json["code"] == "bad_request"
    assert words in response.json["description"]
    assert ChangeLog(harness.settings.data_dir).pending() == []


def test_a_push_over_the_body_limit_is_a_413_with_a_json_body(make_harness):
    harness = make_harness(push_max_bytes=2048)
    response = push(harness, {"upsert": [{**PUB, "abstract": "x" * 4000}]})
    assert response.status_code == 413
    assert "2048 bytes" in response.json["description"]


def test_changes_are_listed_and_shown_and_an_unknown_one_is_404(harness):
    push(harness, {"upsert": [PUB]})
    push(harness, {"delete": ["new-1"]})
    listed = harness.client.simulate_get("/v1/publications/changes").json
    assert [c["change_id"] for c in listed["changes"]] == [2, 1]
    assert listed["counts"]["pending"] == 2
    by_id = harness.client.simulate_get("/v1/publications/changes", params={"id": "new-1"}).json
    assert [(c["change_id"], c["op"]) for c in by_id["changes"]] == [(2, "delete"), (1, "upsert")]
    one = harness.client.simulate_get("/v1/publications/changes/1").json
    assert one["status"] == "pending" and one["upserts"] == ["new-1"] and one["generation"] is None
    for bad in ("99", "abc", "1" * 30):
        response = harness.client.simulate_get(f"/v1/publications/changes/{bad}")
        assert response.status_code == 404 and response.json["code"] == "unknown_change"
    assert harness.client.simulate_get("/v1/publications/changes", params={"status": "odd"}).status_code == 400


def test_an_apply_upload_marks_its_changes_applied_without_the_quality_gate(harness):
    harness.install(0)
    push(harness, {"upsert": [PUB]})
    push(harness, {"upsert": [{**PUB, "id": "new-2"}]})
    response = upload_apply(harness, 1, changes_through=1)
    assert response.status_code == 201, response.json
    assert response.json["quality_gate"] == {"outcome": "not_applied", "reason": "a live-update apply"}
    assert response.json["kind"] == "apply" and response.json["changes_through"] == 1
    one = harness.client.simulate_get("/v1/publications/changes/1").json
    assert one["status"] == "applied" and one["generation"] == response.json["generation"]
    assert harness.client.simulate_get("/v1/publications/changes/2").json["status"] == "pending"


def test_a_rollback_past_an_apply_marks_its_changes_rolled_back(harness):
    upload_apply(harness, 0, changes_through=0, kind="build")
    push(harness, {"upsert": [PUB]})
    assert upload_apply(harness, 1, changes_through=1).status_code == 201
    response = harness.client.simulate_post("/v1/engine/rollback", headers=AUTH)
    assert response.status_code == 200
    change = harness.client.simulate_get("/v1/publications/changes/1").json
    assert change["status"] == "rolled_back" and str(response.json["generation"]) in change["reason"]
    pushed = harness.client.simulate_get("/v1/publications/pushed", headers=AUTH).json
    assert pushed["upserts"] == [] and pushed["pending"] == []


def test_the_pushed_set_is_for_workers_and_operators_clear_it(harness):
    push(harness, {"upsert": [PUB], "delete": ["gone"]})
    assert harness.client.simulate_get("/v1/publications/pushed").status_code == 401
    pushed = harness.client.simulate_get("/v1/publications/pushed", headers=AUTH).json
    assert pushed["changes_through"] == 1 and pushed["pending"] == [1]
    assert pushed["upserts"][0]["id"] == "new-1" and pushed["deletes"] == ["gone"]
    # pending changes are not cleared
    assert harness.client.simulate_delete("/v1/publications/pushed", headers=AUTH).json == {"cleared": 0,
                                                                                            "pending": 1}
    ChangeLog(harness.settings.data_dir).reconcile(1, 1)
    assert harness.client.simulate_delete("/v1/publications/pushed", headers=AUTH).json == {"cleared": 1,
                                                                                            "pending": 0}
    assert harness.client.simulate_get("/v1/publications/pushed", headers=AUTH).json["upserts"] == []


def test_a_worker_reports_a_refused_apply(harness):
    push(harness, {"upsert": [PUB]})
    response = harness.client.simulate_post("/v1/publications/changes/refused", headers=AUTH,
                                            json={"changes_through": 1, "reason": "apply_refused: no load"})
    assert response.json == {"refused": 1}
    change = harness.client.simulate_get("/v1/publications/changes/1").json
    assert change["status"] == "refused" and change["reason"] == "apply_refused: no load"


def test_the_resender_follows_the_engine_and_resends_pending_applies(make_harness):
    harness = make_harness(worker=False)
    changes = ChangeLog(harness.settings.data_dir)
    changes.record([PUB], [])  # committed, but the API died before it sent the apply
    tasks = TaskClient(harness.broker, harness.backend, TaskRecords(harness.kv, 60), result_ttl=60)
    live = LiveUpdates(changes, tasks, harness.settings.build_queue, harness.store)
    live.tick()
    assert [m.actor_name for m in harness.queued(harness.settings.build_queue)] == [protocol.APPLY_ACTOR]
    # an engine that includes it: the tick marks it applied, and sends nothing more
    upload_apply(harness, 0, changes_through=1)
    live.tick()
    assert changes.get(1)["status"] == "applied"
    assert len(harness.queued(harness.settings.build_queue)) == 1


def test_the_resender_does_not_resend_while_the_build_lock_is_held(make_harness):
    harness = make_harness(worker=False)
    changes = ChangeLog(harness.settings.data_dir)
    changes.record([PUB], [])
    tasks = TaskClient(harness.broker, harness.backend, TaskRecords(harness.kv, 60), result_ttl=60)
    lock = BuildLock(harness.kv, 60)
    live = LiveUpdates(changes, tasks, harness.settings.build_queue, harness.store, lock)
    token = lock.acquire(message_id="a-full-build")
    live.tick()
    assert harness.queued(harness.settings.build_queue) == []
    lock.release(token)
    live.tick()
    assert [m.actor_name for m in harness.queued(harness.settings.build_queue)] == [protocol.APPLY_ACTOR]


def test_metrics_count_the_changes_by_status(harness):
    push(harness, {"upsert": [PUB]})
    text = harness.client.simulate_get("/metrics").text
    assert 'recsys_publication_changes{status="pending"} 1.0' in text
    assert 'recsys_publication_changes{status="applied"} 0.0' in text
