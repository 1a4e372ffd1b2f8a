"""apply_changes: pending pushed changes become an incremental build uploaded as
kind "apply" with changes_through; coalescing, the lock, refusals, transient failures;
full builds merge the pushed set too."""

from __future__ import annotations

import json

import pytest

from recsys.changes import ChangeLog
from recsys.cluster import BuildLock
from tests.support.processes import wait_until
from tests.unit.workers.conftest import run

PUB = {"id": "pushed-1", "title": "Dark matter halos", "abstract": "We study halos of dwarf galaxies."}


@pytest.fixture
def changes(fake_api, tmp_path) -> ChangeLog:
    fake_api.changes = ChangeLog(tmp_path / "api")
    return fake_api.changes


def engine_ids(app) -> int:
    return app.services.store.current().manifest.publications


def test_a_full_build_merges_the_pushed_set_and_records_changes_through(app, worker, fake_api, changes):
    changes.record([PUB], [])
    result = run(app, app.actors.build_index)
    assert "error" not in result, result
    assert result["publications"] == 21
    manifest = fake_api.current.manifest
    assert manifest["kind"] == "build" and manifest["changes_through"] == 1
    assert changes.get(1)["status"] == "applied" and changes.get(1)["generation"] == 1


def test_an_apply_uploads_a_thin_apply_and_marks_its_changes_applied(app, worker, fake_api, changes):
    assert "error" not in run(app, app.actors.build_index)
    changes.record([PUB], [])
    changes.record([{**PUB, "id": "pushed-2"}], [])  # coalesced into the same apply
    result = run(app, app.actors.apply_changes)
    assert result["status"] == "done", result
    [applied] = result["applied"]
    assert applied["changes"] == [1, 2] and applied["changes_through"] == 2
    assert applied["publications"] == 22 and set(applied["uploaded"]) == {"bytes", "files", "thin"}
    manifest = fake_api.current.manifest
    assert manifest["kind"] == "apply" and manifest["changes_through"] == 2
    assert [changes.get(n)["status"] for n in (1, 2)] == ["applied", "applied"]
    # this machine serves it without downloading it back
    assert engine_ids(app) == 22 and fake_api.downloads == 0
    assert app.services.build_lock.holder() is None


def test_a_delete_removes_a_source_publication(app, worker, fake_api, changes, settings):
    assert "error" not in run(app, app.actors.build_index)
    first = fake_api.current.manifest["publications"]
    with open(settings.source, encoding="utf-8") as source:
        source_id = json.loads(source.readline())["id"]
    changes.record([], [source_id])
    result = run(app, app.actors.apply_changes)
    assert result["applied"][0]["publications"] == first - 1


def test_nothing_pending_is_a_quick_no_op(app, worker, fake_api, changes):
    assert "error" not in run(app, app.actors.build_index)
    assert run(app, app.actors.apply_changes) == {"status": "done", "applied": []}
    assert fake_api.uploads == 1


def test_before_the_first_engine_an_apply_waits_for_the_first_build(app, worker, fake_api, changes):
    changes.record([PUB], [])
    assert run(app, app.actors.apply_changes)["status"] == "no_engine"
    assert changes.get(1)["status"] == "pending" and fake_api.uploads == 0


def test_while_the_build_lock_is_held_the_apply_leaves_the_changes_to_its_holder(app, worker, fake_api, changes):
    assert "error" not in run(app, app.actors.build_index)
    changes.record([PUB], [])
    BuildLock(app.services.kv, 60).acquire(host="builder-7", pid=42, message_id="other")
    result = run(app, app.actors.apply_changes)
    assert result["status"] == "busy" and result["holder"]["host"] == "builder-7"
    assert changes.get(1)["status"] == "pending"


def test_a_refused_upload_refuses_the_changes(app, worker, fake_api, changes):
    assert "error" not in run(app, app.actors.build_index)
    changes.record([PUB], [])
    fake_api.upload_failures = [400]
    result = run(app, app.actors.apply_changes)
    assert result["error"]["code"] == "apply_refused"
    change = changes.get(1)
    assert change["status"] == "refused" and "upload_refused" in change["reason"]
    assert fake_api.refused[0]["changes_through"] == 1
    assert app.services.build_lock.holder() is None


def test_an_unreachable_api_leaves_the_changes_pending(app, worker, fake_api, changes):
    assert "error" not in run(app, app.actors.build_index)
    changes.record([PUB], [])
    fake_api.upload_failures = [503] * 10
    result = run(app, app.actors.apply_changes)
    assert result["error"]["code"] == "unavailable"
    assert changes.get(1)["status"] == "pending" and fake_api.refused == []
    # the next apply (the API's resender) applies it
    fake_api.upload_failures = []
    assert run(app, app.actors.apply_changes)["applied"][0]["changes"] == [1]
    assert changes.get(1)["status"] == "applied"


def test_an_apply_whose_engine_does_not_load_back_with_its_count_is_refused(app, worker, fake_api, changes,
                                                                           monkeypatch):
    from recsys.testing.stub import StubEngine

    assert "error" not in run(app, app.actors.build_index)
    changes.record([PUB], [])
    monkeypatch.setattr(StubEngine, "publication_count", property(lambda self: 3))
    result = run(app, app.actors.apply_changes)
    assert result["error"]["code"] == "apply_refused"
    assert "holds 3 publications once loaded, not 21" in changes.get(1)["reason"]
    assert fake_api.uploads == 1  # nothing uploaded


def test_changes_pushed_during_a_full_build_stay_pending_for_the_next_apply(app, worker, fake_api, changes,
                                                                           monkeypatch):
    import recsys_workers.building as building

    changes.record([PUB], [])
    original_build = building.build_archive

    def build_then_push(*args, **kwargs):
        archive = original_build(*args, **kwargs)
        changes.record([{**PUB, "id": "pushed-during"}], [])  # after the build read the pushed set
        return archive

    monkeypatch.setattr(building, "build_archive", build_then_push)
    result = run(app, app.actors.build_index)
    assert "error" not in result, result
    assert fake_api.current.manifest["changes_through"] == 1
    assert changes.get(1)["status"] == "applied" and changes.get(2)["status"] == "pending"
    monkeypatch.setattr(building, "build_archive", original_build)
    # and the build sent their apply itself: no need to wait for the API's resender
    applied = wait_until(lambda: changes.get(2)["status"] == "applied", timeout=30, what="change 2 applied")
    assert applied and fake_api.current.manifest["kind"] == "apply"
