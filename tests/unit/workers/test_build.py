"""build_index: one build at a time, upload (thin when the API holds files already),
cleanup, failures leave the engine alone, redelivered copies never build twice at once."""

from __future__ import annotations

import logging
import shutil
import threading
import time

from recsys.archive import verify
from recsys.cluster import BuildLock
from recsys_workers.building import run_build
from tests.unit.workers.conftest import make_segmented, run


def leftovers(app):
    builds = app.settings.data_dir / "builds"
    return sorted(p.name for p in builds.iterdir()) if builds.exists() else []


def test_a_build_fetches_builds_uploads_and_installs_here(app, worker, fake_api):
    result = run(app, app.actors.build_index)
    assert "error" not in result, result
    assert result["engine"]["name"] == "stub"
    assert result["engine"]["generation"] == 1
    assert result["publications"] == 20
    assert fake_api.uploads == 1
    assert fake_api.current.version == result["engine"]["version"]
    # This machine installed what it built: no download back
    assert app.services.store.current().version == result["engine"]["version"]
    assert fake_api.downloads == 0
    # Nothing left behind: temp files, lock
    assert leftovers(app) == []
    assert app.services.build_lock.holder() is None


def test_a_forced_build_uploads_with_force_and_a_normal_one_without(app, worker, fake_api):
    assert "error" not in run(app, app.actors.build_index)
    assert "error" not in run(app, app.actors.build_index, force=True)
    assert [u["force"] for u in fake_api.uploaded] == [False, True]


def test_a_build_clears_the_apis_queued_marker(app, worker):
    message = app.actors.build_index.message()
    assert app.services.build_lock.mark_queued(message.message_id)
    app.broker.enqueue(message)
    result = message.get_result(backend=app.results, block=True, timeout=30_000)
    assert "error" not in result
    assert app.services.build_lock.queued() is None


def test_a_build_while_another_runs_is_refused_with_the_holder(app, worker, fake_api):
    BuildLock(app.services.kv, 60).acquire(host="builder-7", pid=42, message_id="other")
    result = run(app, app.actors.build_index)
    assert result["error"]["code"] == "build_running"
    assert "builder-7" in result["error"]["message"] and "pid 42" in result["error"]["message"]
    assert fake_api.uploads == 0


def test_a_failing_source_leaves_the_engine_in_service(app, worker, fake_api, archives, settings):
    run(app, app.actors.build_index)
    before = app.services.store.current()
    with open(settings.source, "w", encoding="utf-8") as broken:
        broken.write("this is not JSON\n")
    result = run(app, app.actors.build_index)
    assert result["error"]["code"] == "source"
    assert settings.source in result["error"]["message"]
    assert app.services.store.current() == before
    assert fake_api.uploads == 1
    assert leftovers(app) == [] and app.services.build_lock.holder() is None


def test_a_refused_upload_fails_with_the_apis_message_and_cleans_up(app, worker, fake_api):
    fake_api.upload_failures = [413]
    result = run(app, app.actors.build_index)
    assert result["error"]["code"] == "upload_refused"
    assert "HTTP 413" in result["error"]["message"] and "answering 413 as told" in result["error"]["message"]
    assert leftovers(app) == [] and app.services.build_lock.holder() is None
    assert app.services.store.current() is None


def test_transient_upload_failures_are_retried(app, worker, fake_api):
    fake_api.upload_failures = [503, 429, 502]
    result = run(app, app.actors.build_index)
    assert result["engine"]["generation"] == 1
    assert fake_api.uploads == 1


def test_without_a_token_the_build_stops_before_fetching(app, worker, fake_api, monkeypatch):
    monkeypatch.setattr(app.services, "settings", app.settings.replace(api_token=None))
    fetched = []
    monkeypatch.setattr("recsys_workers.building.open_source", lambda *a: fetched.append(a))
    result = run(app, app.actors.build_index)
    assert result["error"]["code"] == "config"
    assert "RECSYS_API_TOKEN" in result["error"]["message"]
    assert fetched == []


def test_an_unexpected_build_crash_is_reported(app, worker, monkeypatch):
    def explode(*args, **kwargs):
        raise MemoryError("out of memory while encoding")

    monkeypatch.setattr("recsys_workers.building.build_archive", explode)
    result = run(app, app.actors.build_index)
    assert result["error"]["code"] == "internal"
    assert "MemoryError" in result["error"]["message"]
    assert app.services.build_lock.holder() is None


def test_build_index_is_never_retried_and_has_the_build_time_limit(app):
    options = app.actors.build_index.options
    assert options["max_retries"] == 0 and options["store_results"] is True
    assert options["time_limit"] == app.settings.build_time_limit * 1000
    assert app.actors.build_index.queue_name == app.settings.build_queue


def test_a_redelivered_copy_waits_for_the_running_build_and_returns_its_result(app, fake_api, caplog):
    # Given the build of message M running elsewhere (it holds the lock for M)
    message = app.actors.build_index.message()
    lock = BuildLock(app.services.kv, app.settings.build_lock_ttl)
    token = lock.acquire(host="elsewhere", message_id=message.message_id)
    # When a redelivered copy of M runs here
    results = []
    copy = threading.Thread(target=lambda: results.append(run_build(app.services, message, app.results)))
    with caplog.at_level(logging.WARNING, logger="recsys_workers"):
        copy.start()
        deadline = time.monotonic() + 30
        while "redelivered while it still runs elsewhere" not in caplog.text:
            assert time.monotonic() < deadline, "the copy never started waiting"
            time.sleep(0.01)
    assert copy.is_alive(), "the copy must wait, not build or fail"
    # And the original finishes (stores its result, releases the lock)
    original = {"engine": {"name": "stub", "version": "v", "generation": 7}}
    app.results.store_result(message, original, ttl=60_000)
    lock.release(token)
    copy.join(30)
    # Then the copy returns the original's result and built nothing
    assert results == [original]
    assert fake_api.uploads == 0


def test_a_redelivered_copy_builds_when_the_original_died(app, fake_api):
    message = app.actors.build_index.message()
    lock = BuildLock(app.services.kv, app.settings.build_lock_ttl)
    token = lock.acquire(host="dead", message_id=message.message_id)
    lock.release(token)  # as if it expired: the original died without a result
    result = run_build(app.services, message, app.results)
    assert result["engine"]["generation"] == 1
    assert fake_api.uploads == 1


# -- thin uploads --------------------------------------------------------------------------

SHARED, OLD, NEW = b"unchanged segment " * 5000, b"old segment " * 300, b"new segment " * 400


def builds_making(monkeypatch, folder, *segments):
    """Make each build produce a stub archive with the next ``segments`` (path -> bytes)."""
    queue = list(segments)

    def build(publications, out, **kwargs):
        shutil.copyfile(make_segmented(folder, queue.pop(0)), out)
        return verify(out)

    monkeypatch.setattr("recsys_workers.building.build_archive", build)


def test_a_rebuild_uploads_a_thin_archive_and_installs_the_full_one_here(app, worker, fake_api, monkeypatch,
                                                                         tmp_path, caplog):
    builds_making(monkeypatch, tmp_path / "made", {"seg/0.bin": SHARED, "seg/1.bin": OLD},
                  {"seg/0.bin": SHARED, "seg/1.bin": NEW})
    first = run(app, app.actors.build_index)
    assert first["uploaded"]["thin"] is False and first["uploaded"]["files"] == 3  # the API had nothing

    with caplog.at_level(logging.INFO, logger="recsys_workers"):
        second = run(app, app.actors.build_index)

    # Only the changed segment went (stub.json and seg/0.bin are the API's already)
    assert second["uploaded"]["thin"] is True and second["uploaded"]["files"] == 1
    assert second["uploaded"]["bytes"] < second["archive"]["size"]
    assert fake_api.uploaded[-1] == {"version": second["engine"]["version"], "thin": True, "files": 1,
                                     "bytes": second["uploaded"]["bytes"], "force": False}
    assert "thin" in caplog.text and "1 of 3 files" in caplog.text
    # The API serves it whole; this machine installed its own full archive: nothing downloaded
    assert verify_bytes(tmp_path, fake_api.current.data).thin is False
    installed = app.services.store.current()
    assert installed.version == second["engine"]["version"] == fake_api.current.version
    assert (installed.path / "seg" / "1.bin").read_bytes() == NEW
    assert fake_api.downloads == 0 and not fake_api.file_requests
    assert leftovers(app) == []


def test_a_thin_archive_the_api_cannot_complete_is_sent_full(app, worker, fake_api, monkeypatch, tmp_path, caplog):
    builds_making(monkeypatch, tmp_path / "made", {"seg/0.bin": SHARED}, {"seg/0.bin": SHARED, "seg/1.bin": NEW})
    run(app, app.actors.build_index)
    del fake_api.blobs[fake_api.current.files["seg/0.bin"]]  # the API lost a file it lists

    with caplog.at_level(logging.WARNING, logger="recsys_workers"):
        result = run(app, app.actors.build_index)

    assert "error" not in result, result
    assert result["uploaded"] == {"bytes": result["archive"]["size"], "files": 3, "thin": False}
    assert [u["thin"] for u in fake_api.uploaded] == [False, False] and fake_api.uploads == 2
    assert "the API lacks 1 of the files the thin archive left out" in caplog.text
    assert leftovers(app) == []


def test_a_first_wave_api_gets_full_archives(app, worker, fake_api, monkeypatch, tmp_path):
    fake_api.first_wave = True
    builds_making(monkeypatch, tmp_path / "made", {"seg/0.bin": SHARED}, {"seg/0.bin": SHARED, "seg/1.bin": NEW})
    run(app, app.actors.build_index)
    result = run(app, app.actors.build_index)
    assert result["uploaded"]["thin"] is False
    assert [u["thin"] for u in fake_api.uploaded] == [False, False]


def verify_bytes(folder, data):
    path = folder / "served.zip"
    path.write_bytes(data)
    return verify(path)
