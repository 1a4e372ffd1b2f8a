"""A build's progress (for GET /v1/tasks/{id} and the console) and the build history."""

from __future__ import annotations

from recsys.cluster import BuildLock
from recsys.progress import BuildHistory, ProgressStore
from recsys_workers.progress import history_entry
from tests.unit.workers.conftest import run


def test_a_build_records_its_progress_under_its_task_id(app, worker):
    message = app.actors.build_index.send()
    result = message.get_result(backend=app.results, block=True, timeout=30_000)
    assert "error" not in result, result

    record = ProgressStore(app.services.kv, 60).get(message.message_id)

    assert record is not None
    assert record.stage in {"fetch", "split", "encode", "index"}
    assert record.total is None or record.done <= record.total


def test_each_build_lands_in_the_history_with_its_outcome_and_duration(app, worker, settings):
    first = run(app, app.actors.build_index)
    with open(settings.source, "w", encoding="utf-8") as broken:
        broken.write("this is not JSON\n")
    run(app, app.actors.build_index)
    BuildLock(app.services.kv, 60).acquire(host="builder-7", pid=42, message_id="other")
    run(app, app.actors.build_index)

    last = BuildHistory(app.services.kv).last()

    assert [entry["outcome"] for entry in last] == ["refused", "failed", "succeeded"]
    assert last[1]["error"]["code"] == "source"
    assert last[2]["engine"] == first["engine"] and last[2]["publications"] == 20
    assert all(entry["seconds"] >= 0 and entry["finished_at"] >= entry["started_at"] for entry in last)


def test_a_build_that_raised_is_an_internal_failure():
    entry = history_entry("t", "2026-01-01T00:00:00.000000Z", 1.26, None, RuntimeError("boom"))
    assert entry["outcome"] == "failed" and entry["seconds"] == 1.3
    assert entry["error"] == {"code": "internal", "message": "RuntimeError: boom"}
