"""Heartbeats and the worker's boot/shutdown: who serves which engine, in the KV."""

from __future__ import annotations

import json
import os
import time

import dramatiq

import recsys
from recsys import protocol
from recsys.cluster import Heartbeats
from recsys.kv import MemoryKV
from recsys_workers.periodic import HeartbeatThread
from tests.unit.workers.conftest import make_app


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_a_heartbeat_reports_the_loaded_engine(app, fake_api, archives):
    thread = HeartbeatThread(app.services, ["recsys.requests"])
    thread.tick()
    [beat] = Heartbeats(app.services.kv, 1).live()
    assert beat["pid"] == os.getpid() and beat["queues"] == ["recsys.requests"]
    assert beat["generation"] is None and beat["version"] is None
    # what it supports, for the API's feature gate (recsys.protocol, "Mixed versions")
    assert (beat["protocol"], beat["features"]) == (protocol.PROTOCOL_VERSION, sorted(protocol.WORKER_FEATURES))
    assert beat["recsys_version"] == recsys.__version__
    stored = fake_api.publish(archives())
    app.services.rollout.pull_current()
    app.services.rollout.refresh()
    thread.tick()
    [beat] = Heartbeats(app.services.kv, 1).live()
    assert (beat["generation"], beat["version"], beat["engine"]) == (1, stored.version, "stub")
    assert beat["data_dir"] == str(app.settings.data_dir)
    thread.stop()
    assert Heartbeats(app.services.kv, 1).live() == []


def test_a_booted_worker_beats_catches_up_and_forgets_itself_on_shutdown(settings, fake_api, archives):
    # Given an API with an engine and a worker with its background threads
    stored = fake_api.publish(archives())
    kv = MemoryKV()
    app = make_app(settings, fake_api, kv=kv, background=True)
    worker = app.start_worker(threads=1, poll_ms=100)
    try:
        # Then it catches up by itself and its heartbeat says so, with every queue
        beat = wait_for(lambda: [b for b in Heartbeats(kv, 1).live() if b.get("generation") == 1])
        assert beat[0]["version"] == stored.version
        assert beat[0]["queues"] == sorted([settings.request_queue, settings.build_queue,
                                            settings.broadcast_exchange])
        assert fake_api.pulls == 1
    finally:
        worker.stop()
        app.close()
    assert Heartbeats(kv, 1).live() == []


def test_a_catch_up_request_wakes_the_thread(settings, fake_api, archives):
    kv = MemoryKV()
    app = make_app(settings, fake_api, kv=kv, background=True)  # catch-up every hour
    worker = dramatiq.Worker(app.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: Heartbeats(kv, 1).live())
        fake_api.publish(archives())
        app.services.request_catch_up()
        wait_for(lambda: [b for b in Heartbeats(kv, 1).live() if b.get("generation") == 1])
    finally:
        worker.stop()
        app.close()
    assert json.dumps(Heartbeats(kv, 1).live()) == "[]"
