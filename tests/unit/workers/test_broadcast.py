"""engine_updated and the Rollout: the generation rule, one download per machine,
checks before install, rollbacks, catch-up; broadcasts of this API (manifest_sha256)
and of a first-wave one (sha256: the full archive)."""

from __future__ import annotations

import logging
import threading

import pytest

from recsys.errors import InvalidArchive, InvalidTarget, NoEngine, Unavailable
from recsys.kv import MemoryKV
from recsys.testing import stub_registry
from recsys_workers.actors.broadcast import BROADCAST_PRIORITY, handle_engine_updated
from recsys_workers.actors.recommend import REQUEST_PRIORITY
from recsys_workers.api_client import ApiClient
from recsys_workers.app import create_worker_app
from recsys_workers.rollout import Followed, Target
from tests.unit.workers.conftest import make_app


def broadcast(app, stored, **changes):
    """What the API sends (generation, version, created_at, manifest_sha256)."""
    kwargs = {"generation": stored.generation, "version": stored.version, "created_at": stored.created_at,
              "manifest_sha256": stored.manifest_sha256}
    kwargs.update(changes)
    handle_engine_updated(app.services, **kwargs)


def first_wave_broadcast(app, stored):
    """What a first-wave API sent (its archive's sha256, no manifest_sha256)."""
    handle_engine_updated(app.services, stored.generation, stored.version, stored.created_at, stored.sha256)


def test_a_newer_generation_is_downloaded_installed_and_loaded(app, fake_api, archives):
    stored = fake_api.publish(archives())
    broadcast(app, stored)
    assert fake_api.pulls == 1 and fake_api.downloads == 0  # files, not the archive
    assert app.services.store.generation == 1
    assert app.services.store.current().manifest_sha256 == stored.manifest_sha256
    loaded = app.services.loaded()
    assert (loaded.version, loaded.generation) == (stored.version, 1)
    assert not list(app.services.store.root.glob(".tmp-*")), "the download is deleted"


def test_an_equal_or_older_generation_is_ignored(app, fake_api, archives, caplog):
    first = fake_api.publish(archives())
    second = fake_api.publish(archives())
    broadcast(app, second)
    with caplog.at_level(logging.INFO, logger="recsys_workers"):
        broadcast(app, second)
        broadcast(app, first)
    assert fake_api.pulls == 1
    assert app.services.loaded().generation == 2
    assert sum("nothing to do" in r.getMessage() for r in caplog.records) == 2


def test_a_rollback_is_a_new_generation_of_a_version_on_disk_and_needs_no_download(app, fake_api, archives):
    first = fake_api.publish(archives())
    broadcast(app, first)
    broadcast(app, fake_api.publish(archives()))
    rolled_back = fake_api.rollback(first.version)
    broadcast(app, rolled_back)
    assert fake_api.pulls == 2
    assert app.services.store.current().version == first.version
    assert (app.services.loaded().version, app.services.loaded().generation) == (first.version, 3)


def test_a_checksum_failure_keeps_the_old_engine_and_says_why(app, fake_api, archives, caplog):
    first = fake_api.publish(archives())
    broadcast(app, first)
    second = fake_api.publish(archives(5))
    (changed,) = set(second.files.values()) - set(first.files.values())
    fake_api.corrupt[changed] = bytes(len(fake_api.blobs[changed]))  # other bytes under that name
    with caplog.at_level(logging.ERROR, logger="recsys_workers"):
        broadcast(app, second)
    assert app.services.store.current().version == first.version
    assert app.services.loaded().version == first.version
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "NOT installed" in message and "do not match its name" in message
    assert "keeps serving generation 1" in message
    store = app.services.store
    assert not store.blobs.has(changed) and store.blobs.partial_bytes(changed) == 0  # refused and deleted
    assert not store.has(second.version) and not list(store.root.glob(".tmp-*"))


def test_a_first_wave_checksum_failure_keeps_the_old_engine_and_says_why(app, fake_api, archives, caplog):
    fake_api.first_wave = True
    first = fake_api.publish(archives())
    first_wave_broadcast(app, first)
    second = fake_api.publish(archives())
    fake_api.serve_instead = first.data  # a wrong file behind generation 2's headers
    with caplog.at_level(logging.ERROR, logger="recsys_workers"):
        first_wave_broadcast(app, second)
    assert app.services.store.current().version == first.version
    assert app.services.loaded().version == first.version
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "NOT installed" in message and "sha256" in message and "keeps serving generation 1" in message
    assert not list(app.services.store.root.glob(".tmp-*"))


def test_a_truncated_first_wave_download_is_refused(app, fake_api, archives):
    fake_api.first_wave = True
    stored = fake_api.publish(archives())
    fake_api.serve_instead = stored.data[:-10]
    with pytest.raises(InvalidArchive, match="sha256"):
        app.services.rollout.follow(Target(stored.generation, stored.version, stored.sha256))
    assert app.services.store.current() is None


def test_when_a_first_wave_api_is_already_newer_its_headers_check_the_download(app, fake_api, archives):
    fake_api.first_wave = True
    first = fake_api.publish(archives())
    second = fake_api.publish(archives())
    followed, installed = app.services.rollout.follow(Target(first.generation, first.version, first.sha256))
    assert followed is Followed.INSTALLED
    assert (installed.version, installed.generation) == (second.version, 2)


def test_when_the_api_is_already_newer_the_announced_version_is_installed(app, fake_api, archives):
    first = fake_api.publish(archives())
    fake_api.publish(archives())
    followed, installed = app.services.rollout.follow(
        Target(first.generation, first.version, manifest_sha256=first.manifest_sha256))
    assert followed is Followed.INSTALLED
    assert (installed.version, installed.generation) == (first.version, 1)  # content-addressed: exactly it


def test_a_first_wave_broadcast_downloads_the_full_archive_and_fills_the_blobs(app, fake_api, archives):
    fake_api.first_wave = True
    stored = fake_api.publish(archives())
    first_wave_broadcast(app, stored)
    assert fake_api.downloads == 1 and not fake_api.file_requests
    assert app.services.loaded().version == stored.version
    store = app.services.store
    assert set(store.blobs.names()) == {*stored.files.values(), stored.manifest_sha256}


def test_a_malformed_broadcast_is_logged_and_dropped(app, fake_api, caplog):
    with caplog.at_level(logging.ERROR, logger="recsys_workers"):
        handle_engine_updated(app.services, "two", "v", None, "abc")
        handle_engine_updated(app.services, 2, "20260101T000000000000Z", None, None, "not-a-sha")
    assert caplog.text.count("cannot be followed") == 2
    assert fake_api.pulls == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"generation": 0, "version": "20260101T000000000000Z"},
        {"generation": True, "version": "20260101T000000000000Z"},
        {"generation": 1, "version": "../etc"},
        {"generation": 1, "version": "20260101T000000000000Z", "sha256": "XYZ"},
        {"generation": 1, "version": "20260101T000000000000Z", "manifest_sha256": "A" * 64},
        {"generation": 1, "version": "20260101T000000000000Z", "size": -1},
    ],
)
def test_targets_are_validated(kwargs):
    with pytest.raises(InvalidTarget):
        Target(**kwargs)


def test_processes_of_one_machine_download_once(settings, fake_api, archives):
    # Given two processes (two apps, two EngineStore objects) over one data dir
    apps = [make_app(settings, fake_api) for _ in range(2)]
    stored = fake_api.publish(archives())
    start = threading.Barrier(2)

    def handle(app):
        start.wait()
        broadcast(app, stored)

    # When both handle the same broadcast at the same time
    threads = [threading.Thread(target=handle, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then the machine downloaded once (each file once) and both serve the new engine
    assert fake_api.pulls == 1
    assert set(fake_api.fetched(stored).values()) == {1}
    assert [app.services.loaded().generation for app in apps] == [1, 1]
    for app in apps:
        app.close()


def test_broadcasts_run_before_requests_already_fetched(app):
    assert app.actors.engine_updated.priority == BROADCAST_PRIORITY < REQUEST_PRIORITY == app.actors.recommend.priority
    assert app.actors.engine_updated.options["max_retries"] == 0
    assert not app.actors.engine_updated.options.get("store_results")
    assert app.actors.engine_updated.queue_name == app.settings.broadcast_exchange


def test_catch_up_follows_the_api_and_loads_the_engine(app, fake_api, archives):
    assert app.services.rollout.catch_up() is None  # the API has no engine yet
    stored = fake_api.publish(archives())
    assert app.services.rollout.catch_up() is Followed.INSTALLED
    assert app.services.loaded().version == stored.version
    assert app.services.rollout.catch_up() is Followed.IGNORED
    assert fake_api.pulls == 1


def test_catch_up_with_the_api_down_still_loads_the_machines_engine(settings, fake_api, archives):
    fake_api.publish(archives())
    make_app(settings, fake_api).services.rollout.pull_current()  # another process installed it
    app = create_worker_app(settings, kv=MemoryKV(), registry=stub_registry(),
                            api=ApiClient("http://127.0.0.1:9"), background=False)
    with pytest.raises(Unavailable, match="unreachable"):
        app.services.rollout.catch_up()
    assert app.services.loaded().generation == 1


def test_pulling_from_an_api_without_engine_says_to_build_one(app):
    with pytest.raises(NoEngine, match="build"):
        app.services.rollout.pull_current()
