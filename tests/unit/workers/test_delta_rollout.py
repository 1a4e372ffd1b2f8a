"""The content-addressed rollout: only the files a machine lacks are downloaded, each
blob once per machine, checked, resumed after a break, a full disk or a killed
process; a partial set of files never becomes current; a first-wave API is followed
with its full archive; progress is reported into Redis."""

from __future__ import annotations

import errno
import json
import logging
import random
import threading

import pytest

import recsys.blobs
from recsys.archive import file_sha256, unpack
from recsys.cluster import RolloutProgress, Rollouts
from recsys.errors import InvalidArchive, InvalidTarget, StoreError, Unavailable
from recsys.kv import MemoryKV
from recsys.locks import FileLock
from recsys_workers.actors.broadcast import handle_engine_updated
from recsys_workers.rollout import Followed, Progress, Target
from tests.unit.workers.conftest import make_app

MB = 1 << 20
BIG = random.Random(1).randbytes(3 * MB)  # three chunks of the download
SHARED = random.Random(2).randbytes(200_000)
OLD, NEW = random.Random(3).randbytes(50_000), random.Random(4).randbytes(70_000)


def target(stored) -> Target:
    return Target(stored.generation, stored.version, created_at=stored.created_at,
                  manifest_sha256=stored.manifest_sha256)


class Recording(Rollouts):
    """Rollouts that also keeps every report it wrote."""

    def __init__(self, kv) -> None:
        super().__init__(kv)
        self.seen: list[dict] = []

    def report(self, progress: RolloutProgress) -> None:
        super().report(progress)
        self.seen.append(dict(vars(progress)))


@pytest.fixture
def recorded(app) -> Recording:
    recording = Recording(app.services.kv)
    app.services.rollout.rollouts = recording
    return recording


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full(sha)``: writing blob ``sha`` fails with ENOSPC once 1 MiB is on disk."""
    real = recsys.blobs.PartialBlob.write
    full: set[str] = set()

    def write(self, chunk):
        if self.sha256 in full and self.offset >= MB:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, chunk)

    monkeypatch.setattr(recsys.blobs.PartialBlob, "write", write)
    return full


def test_a_rollout_downloads_only_the_files_the_machine_lacks(app, fake_api, segmented, recorded, caplog):
    rollout = app.services.rollout
    first = fake_api.publish(segmented({"seg/0.bin": SHARED, "seg/1.bin": OLD}))
    rollout.follow(target(first))
    assert set(fake_api.fetched(first).values()) == {1}

    second = fake_api.publish(segmented({"seg/0.bin": SHARED, "seg/1.bin": OLD, "seg/2.bin": NEW}, count=5))
    fake_api.file_requests.clear()
    with caplog.at_level(logging.INFO, logger="recsys_workers.rollout"):
        followed, installed = rollout.follow(target(second))

    assert followed is Followed.INSTALLED and installed.manifest_sha256 == second.manifest_sha256
    assert sorted(fake_api.fetched(second)) == ["seg/2.bin", "stub.json"]  # not the unchanged segments
    assert fake_api.downloads == 0
    assert (installed.path / "seg" / "2.bin").read_bytes() == NEW
    stub = len(fake_api.blobs[second.files["stub.json"]])
    report = Rollouts(app.services.kv).live()[0]
    assert {k: report[k] for k in ("generation", "version", "manifest_sha256", "state", "files_needed",
                                   "files_fetched", "bytes_needed", "bytes_fetched", "bytes_reused", "error")} == {
        "generation": 2, "version": second.version, "manifest_sha256": second.manifest_sha256, "state": "done",
        "files_needed": 2, "files_fetched": 2, "bytes_needed": len(NEW) + stub, "bytes_fetched": len(NEW) + stub,
        "bytes_reused": len(SHARED) + len(OLD), "error": None}
    assert [r["state"] for r in recorded.seen][-2:] == ["fetching", "done"]
    assert "2 of 4 files downloaded (0.1 MB received), 2 files (0.2 MB) reused from this machine" in caplog.text


def test_a_download_that_breaks_off_resumes_where_it_stopped(app, fake_api, segmented):
    stored = fake_api.publish(segmented({"big.bin": BIG}))
    fake_api.cut[stored.files["big.bin"]] = 2 * MB + 5  # the connection drops after that

    installed = app.services.rollout.follow(target(stored))[1]

    assert (installed.path / "big.bin").read_bytes() == BIG
    # The 2 MiB written before the cut are kept (the 5 bytes in flight are lost)
    assert fake_api.ranges == [(stored.files["big.bin"], 2 * MB)]


def test_a_full_disk_keeps_the_current_engine_and_the_next_attempt_resumes(app, fake_api, segmented, recorded,
                                                                          disk_full):
    rollout, store = app.services.rollout, app.services.store
    first = fake_api.publish(segmented({"seg/0.bin": SHARED}))
    handle_engine_updated(app.services, first.generation, first.version, first.created_at,
                          manifest_sha256=first.manifest_sha256)
    second = fake_api.publish(segmented({"seg/0.bin": SHARED, "big.bin": BIG}, count=5))
    big = second.files["big.bin"]
    disk_full.add(big)

    with pytest.raises(StoreError, match="No space left on device.*disk full.*the next attempt resumes"):
        rollout.follow(target(second))

    # The current engine serves on; the bytes that arrived stay; nothing half-made is a version
    assert store.current().version == first.version and rollout.refresh().version == first.version
    assert store.blobs.partial_bytes(big) == MB and not store.blobs.has(big) and not store.has(second.version)
    assert recorded.seen[-1]["state"] == "failed" and "No space left" in recorded.seen[-1]["error"]
    # When space is back, the next attempt asks only for the rest
    disk_full.clear()
    followed, installed = rollout.follow(target(second))
    assert followed is Followed.INSTALLED and (installed.path / "big.bin").read_bytes() == BIG
    assert fake_api.ranges == [(big, MB)]
    assert store.blobs.partial_bytes(big) == 0
    assert recorded.seen[-1]["state"] == "done" and recorded.seen[-1]["bytes_fetched"] == len(BIG) + len(
        fake_api.blobs[second.files["stub.json"]])


def test_a_download_left_by_a_killed_process_is_resumed(app, fake_api, segmented, caplog):
    stored = fake_api.publish(segmented({"big.bin": BIG}))
    big = stored.files["big.bin"]
    # What a process killed in the middle of the download leaves: a partial blob
    partial = app.services.store.blobs.partial(big, len(BIG))
    partial.write(BIG[:2 * MB + 7])
    partial.close()
    reopened = make_app(app.settings, fake_api)  # the restarted worker opens the store again
    try:
        with caplog.at_level(logging.INFO, logger="recsys_workers.rollout"):
            installed = reopened.services.rollout.follow(target(stored))[1]
        assert (installed.path / "big.bin").read_bytes() == BIG
        assert fake_api.ranges == [(big, 2 * MB + 7)]
        assert "2.1 MB resumed from an earlier attempt" in caplog.text
    finally:
        reopened.close()


def test_a_200_to_a_range_request_starts_the_file_again(app, fake_api, segmented):
    stored = fake_api.publish(segmented({"big.bin": BIG}))
    big = stored.files["big.bin"]
    partial = app.services.store.blobs.partial(big, len(BIG))
    partial.write(b"\0" * 1000)  # not even the right bytes: the whole file comes again
    partial.close()
    fake_api.ignore_range = True

    installed = app.services.rollout.follow(target(stored))[1]

    assert (installed.path / "big.bin").read_bytes() == BIG and fake_api.ranges == []


def test_a_blob_whose_bytes_do_not_match_is_refused_deleted_and_fetched_again_next_time(app, fake_api, segmented):
    store = app.services.store
    stored = fake_api.publish(segmented({"seg/0.bin": SHARED}))
    bad = stored.files["seg/0.bin"]
    fake_api.corrupt[bad] = SHARED[:-1] + b"!"

    with pytest.raises(InvalidArchive, match="do not match its name"):
        app.services.rollout.follow(target(stored))
    assert store.current() is None and not store.blobs.has(bad) and store.blobs.partial_bytes(bad) == 0

    del fake_api.corrupt[bad]
    assert app.services.rollout.follow(target(stored))[0] is Followed.INSTALLED


def test_a_manifest_whose_bytes_do_not_match_its_name_is_refused(app, fake_api, segmented):
    stored = fake_api.publish(segmented({"seg/0.bin": SHARED}))
    fake_api.corrupt[stored.manifest_sha256] = stored.manifest_bytes.replace(b'"stub"', b'"stab"')
    with pytest.raises(InvalidArchive, match="the manifest the API served as .* has sha256"):
        app.services.rollout.follow(target(stored))
    assert not fake_api.fetched(stored)


def test_a_failing_file_leaves_a_partial_set_that_never_becomes_current(app, fake_api, segmented):
    store = app.services.store
    first = fake_api.publish(segmented({"seg/0.bin": SHARED}))
    app.services.rollout.follow(target(first))
    second = fake_api.publish(segmented({"seg/0.bin": NEW, "seg/1.bin": OLD}, count=4))
    fake_api.cut[second.files["seg/1.bin"]] = 10
    fake_api.cut_forever = True  # every attempt breaks off
    with pytest.raises(Unavailable, match="3 attempts, 0 of 50000 bytes on disk"):
        app.services.rollout.follow(target(second))
    assert store.current().version == first.version and not store.has(second.version)
    assert store.blobs.has(second.files["seg/0.bin"])  # complete blobs stay for the next attempt

    fake_api.cut.clear()
    fake_api.fail_files[second.files["seg/1.bin"]] = 503
    with pytest.raises(Unavailable, match="answered 503"):
        app.services.rollout.follow(target(second))
    assert store.current().version == first.version and not store.has(second.version)


def test_the_version_a_manifest_names_must_be_the_announced_one(app, fake_api, segmented):
    first = fake_api.publish(segmented({}))
    second = fake_api.publish(segmented({}))
    lying = Target(second.generation, second.version, manifest_sha256=first.manifest_sha256)
    with pytest.raises(InvalidArchive, match=f"names version {first.version}, but generation 2"):
        app.services.rollout.follow(lying)
    assert app.services.store.current() is None


def test_a_version_the_api_no_longer_keeps_wakes_the_catch_up(app, fake_api, segmented):
    old = fake_api.publish(segmented({"seg/0.bin": OLD}))
    fake_api.publish(segmented({"seg/0.bin": NEW}))
    fake_api.forget(old.version)

    with pytest.raises(InvalidTarget, match="no longer keeps generation 1"):
        app.services.rollout.follow(target(old))

    assert app.services.catch_up_requested.is_set()
    assert app.services.rollout.catch_up() is Followed.INSTALLED
    assert app.services.store.generation == 2


@pytest.mark.parametrize("how", ["first_wave", "405"])
def test_an_api_without_a_files_endpoint_is_followed_with_its_full_archive(app, fake_api, segmented, how):
    store = app.services.store
    first = fake_api.publish(segmented({"seg/0.bin": SHARED}))
    if how == "first_wave":
        fake_api.first_wave = True
        assert "manifest_sha256" not in fake_api.current.info(first_wave=True)
        followed, installed = app.services.rollout.pull_current()
    else:
        fake_api.files_status = 405
        followed, installed = app.services.rollout.follow(target(first))
    assert followed is Followed.INSTALLED and installed.version == first.version
    assert fake_api.downloads == 1
    # The full archive filled the blobs: a later delta from a second-wave API reuses them
    fake_api.first_wave, fake_api.files_status = False, None
    fake_api.file_requests.clear()
    second = fake_api.publish(segmented({"seg/0.bin": SHARED, "seg/1.bin": NEW}, count=5))
    app.services.rollout.follow(target(second))
    assert sorted(fake_api.fetched(second)) == ["seg/1.bin", "stub.json"]
    assert store.current().version == second.version


def test_a_target_without_archive_checks_is_enough(app, fake_api, segmented):
    # The API has not assembled the full archive yet: sha256 and size are null
    fake_api.archive_known = False
    fake_api.publish(segmented({"seg/0.bin": SHARED}))
    followed, installed = app.services.rollout.pull_current()
    assert followed is Followed.INSTALLED and installed.generation == 1 and fake_api.downloads == 0


def test_processes_of_one_machine_download_each_blob_once(settings, fake_api, segmented):
    apps = [make_app(settings, fake_api) for _ in range(2)]
    try:
        versions = ((5, {"seg/0.bin": SHARED, "big.bin": BIG}), (6, {"seg/0.bin": SHARED, "seg/1.bin": NEW}))
        for count, segments in versions:
            stored = fake_api.publish(segmented(segments, count=count))
            start = threading.Barrier(2)

            def follow(app, stored=stored, start=start):
                start.wait()
                handle_engine_updated(app.services, stored.generation, stored.version, stored.created_at,
                                      manifest_sha256=stored.manifest_sha256)

            threads = [threading.Thread(target=follow, args=(app,)) for app in apps]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert [app.services.loaded().version for app in apps] == [stored.version] * 2
        # Every blob and manifest was fetched once for the machine, by one of the two
        # (2 manifests, 2 stub.json, SHARED once, BIG, NEW)
        assert len(fake_api.file_requests) == 7 and set(fake_api.file_requests.values()) == {1}
    finally:
        for app in apps:
            app.close()


def test_progress_is_reported_at_start_at_most_every_half_second_and_at_the_end():
    recording = Recording(MemoryKV())
    now = [100.0]
    progress = Progress(recording, RolloutProgress(3, "20260101T000000000000Z", bytes_needed=10),
                        clock=lambda: now[0])
    progress.start()
    for step in (0.1, 0.2, 0.3, 0.6, 0.7, 1.2):
        now[0] = 100.0 + step
        progress.add(1)
    progress.file_done()
    progress.done()
    assert [(r["bytes_fetched"], r["state"]) for r in recording.seen] == [
        (0, "fetching"), (4, "fetching"), (6, "fetching"), (6, "done")]
    assert recording.seen[-1]["seconds"] == 1.2 and recording.seen[-1]["files_fetched"] == 1


def test_progress_that_cannot_be_reported_does_not_stop_the_rollout(app, fake_api, segmented, caplog):
    class Down(Rollouts):
        def report(self, progress):
            raise Unavailable("Redis at redis://nowhere is unreachable")

    app.services.rollout.rollouts = Down(app.services.kv)
    stored = fake_api.publish(segmented({"seg/0.bin": SHARED}))
    with caplog.at_level(logging.WARNING, logger="recsys_workers.rollout"):
        assert app.services.rollout.follow(target(stored))[0] is Followed.INSTALLED
    assert caplog.text.count("cannot report the rollout's progress") == 1


def test_the_builders_machine_reports_its_install_without_a_download(app, fake_api, archives):
    archive = archives()
    installed = app.services.rollout.install_built(archive, generation=4, sha256=file_sha256(archive))
    (report,) = Rollouts(app.services.kv).live()
    assert (report["state"], report["generation"], report["files_needed"], report["bytes_reused"]) == (
        "done", 4, 0, installed.manifest.total_size)


def test_a_first_wave_machine_downloads_only_what_changed(app, fake_api, segmented):
    # Given a machine whose store the first wave wrote (plain files, no blobs), opened
    # while another process held its lock (so not adopted at open)
    first = fake_api.publish(segmented({"seg/0.bin": SHARED}))
    root = app.settings.data_dir / "engines"
    unpack(served_archive(fake_api, first, app.settings.data_dir), root / "versions" / first.version)
    (root / "CURRENT").write_text(json.dumps({"version": first.version, "generation": 1, "sha256": first.sha256,
                                              "installed_at": "2026-11-01T12:00:00.000000Z"}))
    with FileLock(root / ".lock").hold():
        store = app.services.store
    assert store.current().version == first.version and not list(store.blobs.names())
    # When the API moves to a version that shares a segment
    second = fake_api.publish(segmented({"seg/0.bin": SHARED, "seg/1.bin": NEW}, count=5))
    app.services.rollout.follow(target(second))
    # Then the machine fetched only the new files
    assert sorted(fake_api.fetched(second)) == ["seg/1.bin", "stub.json"]
    assert store.current().version == second.version


def served_archive(fake_api, stored, folder):
    path = folder / f"{stored.version}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stored.data)
    return path
