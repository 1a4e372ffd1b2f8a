"""WorkerServices: typed dependencies, the ones that touch disk or plugins made on first
use; close releases what they made and leaves what the caller passed in."""

from __future__ import annotations

import threading

from recsys.kv import MemoryKV
from recsys_workers.services import Lazy, WorkerServices
from tests.unit.workers.conftest import make_app


def test_a_lazy_value_is_made_once_whichever_threads_ask():
    made = []
    start = threading.Barrier(4)

    def make():
        made.append(1)
        return object()

    lazy = Lazy(make)
    assert lazy.peek() is None
    seen = []

    def ask():
        start.wait(timeout=30)
        seen.append(lazy.get())

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(made) == 1 and len({id(v) for v in seen}) == 1 and lazy.peek() is seen[0]


def test_nothing_touches_the_disk_until_the_store_is_used(settings):
    services = WorkerServices(settings, kv=MemoryKV())
    assert not settings.data_dir.exists() and not services.store_opened and services.loaded() is None
    assert services.heartbeats.kv is services.kv and services.build_lock.kv is services.kv

    services.store.current()

    assert services.store_opened and (settings.data_dir / "engines" / "versions").is_dir()


def test_close_releases_what_it_made_and_keeps_what_was_given(settings, fake_api, archives):
    # Given services with the caller's KV and API client, and an engine loaded
    app = make_app(settings, fake_api)
    services = app.services
    fake_api.publish(archives())
    services.rollout.pull_current()
    loaded = services.rollout.refresh()
    closed = []
    loaded.engine.close = lambda: closed.append("engine")

    # When they are closed
    services.close()

    # Then the engine is closed, the given KV and API client still work
    assert closed == ["engine"] and services.loaded() is None
    services.kv.set("k", "v")
    assert services.api.current()["generation"] == 1
