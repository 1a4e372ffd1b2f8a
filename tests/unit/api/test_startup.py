"""The start-engine step: install RECSYS_START_ENGINE, else send one build_index."""

from __future__ import annotations

import logging

import pytest

from recsys import protocol
from recsys.errors import ConfigError
from recsys_api.app import create_app

from .conftest import AUTH, run_start_step
from .test_engine import FlakyBroker


def test_an_empty_store_sends_one_build_at_start(make_harness):
    h = make_harness(worker=False, run_start=True)

    builds = h.queued(h.settings.build_queue)
    assert [m.actor_name for m in builds] == [protocol.BUILD_ACTOR]
    # the task is recorded, and a client's build request is refused while it is queued
    assert h.client.simulate_get(f"/v1/tasks/{builds[0].message_id}").json["status"] == "pending"
    assert h.client.simulate_post("/v1/engine/builds", headers=AUTH).status_code == 409


def test_several_api_instances_send_only_one_build(make_harness):
    # Given the KV, broker and store that several API instances share
    first = make_harness(worker=False, run_start=True)

    # When each of them runs its start step
    outcomes = [run_start_step(first) for _ in range(3)]

    # Then the first build is the only one sent
    assert outcomes == ["build busy"] * 3
    assert len(first.queued(first.settings.build_queue)) == 1


def test_creating_the_app_has_no_side_effect(make_harness, tmp_path):
    # Given an empty store and a start archive
    archive = make_harness(create=False, worker=False).archive()
    h = make_harness(create=False, worker=False, start_engine=archive)

    # When gunicorn's workers create their apps
    for _ in range(3):
        create_app(h.settings, broker=h.broker, result_backend=h.backend, kv=h.kv,
                   archive_store=h.store, broadcaster=h.broadcaster, registry_records=[])

    # Then nothing was installed, broadcast or sent
    assert h.store.current() is None
    assert h.broadcaster.published == []
    assert h.queued(h.settings.build_queue) == []


def test_a_start_engine_archive_is_installed_and_broadcast_and_no_build_is_sent(make_harness, tmp_path):
    archive = make_harness(create=False, worker=False).archive()

    h = make_harness(worker=False, run_start=True, start_engine=archive)

    current = h.client.simulate_get("/v1/engine").json
    assert current["generation"] == 1
    assert [a.generation for a in h.broadcaster.published] == [1]
    assert h.queued(h.settings.build_queue) == []


def test_the_start_engine_archive_does_not_replace_an_existing_engine(make_harness):
    h = make_harness(create=False, worker=False)
    installed = h.install(minutes=1)
    newer = h.archive(minutes=9)

    h2 = make_harness(worker=False, run_start=True, start_engine=newer)

    assert h2.client.simulate_get("/v1/engine").json["version"] == installed.version
    assert h2.broadcaster.published == []


def test_an_invalid_start_engine_archive_refuses_to_start(make_harness, tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")

    with pytest.raises(ConfigError, match=r"RECSYS_START_ENGINE=.*bad.zip' is not a valid engine archive"):
        make_harness(worker=False, run_start=True, start_engine=bad)


def test_a_missing_start_engine_archive_refuses_to_start(make_harness, tmp_path):
    with pytest.raises(ConfigError, match="does not exist; fix the path or unset it"):
        make_harness(worker=False, run_start=True, start_engine=tmp_path / "missing.zip")


def test_a_broker_down_at_start_is_logged_and_the_api_starts(make_harness, caplog):
    broker = FlakyBroker()
    broker.down = True
    caplog.set_level(logging.WARNING, logger="recsys_api.startup")

    h = make_harness(worker=False, run_start=True, broker=broker)

    assert "the first build could not be sent" in caplog.text
    assert h.client.simulate_get("/health").status_code == 200
    broker.down = False
    assert h.client.simulate_post("/v1/engine/builds", headers=AUTH).status_code == 202
