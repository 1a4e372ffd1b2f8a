"""Engine cache: loads once, reloads on a new version, serves the old engine while
loading, waits when it has none, survives a failing loader. Threads are coordinated
with events, never with sleeps."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recsys.archive import pack
from recsys.cache import EngineCache
from recsys.errors import EngineLoadError
from recsys.store import EngineStore, Installed
from tests.support.engines import TinyEngine, publications

START = datetime(2026, 11, 1, tzinfo=UTC)
WAIT = 30  # seconds an event may take before a test gives up (never reached when the code is right)


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> list[Path]:
    where = tmp_path_factory.mktemp("archives")
    made = []
    for day in range(2):
        engine = TinyEngine()
        engine.fit(publications(3 + day))
        folder = where / f"saved{day}"
        folder.mkdir()
        out = where / f"engine{day}.zip"
        pack(folder, out, engine="tiny", metadata=engine.save(folder), created_at=START + timedelta(days=day))
        made.append(out)
    return made


@pytest.fixture
def store(tmp_path) -> EngineStore:
    return EngineStore(tmp_path / "engines", engines={"tiny"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Loads the tiny engine; a version can be held at a gate or made to fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.failing: set[str] = set()

    def hold(self, version: str) -> threading.Event:
        self.started[version] = threading.Event()
        self.gates[version] = threading.Event()
        return self.gates[version]

    def __call__(self, installed: Installed) -> TinyEngine:
        self.calls.append(installed.version)
        if installed.version in self.started:
            self.started[installed.version].set()
            self.gates[installed.version].wait(WAIT)
        if installed.version in self.failing:
            raise ValueError(f"cannot map the index of {installed.version}")
        return TinyEngine.load(installed.path)


def in_thread(target) -> tuple[threading.Thread, list]:
    box: list = []
    thread = threading.Thread(target=lambda: box.append(target()))
    thread.start()
    return thread, box


def test_get_is_none_while_the_store_has_no_engine(store):
    loader = Loader()
    assert EngineCache(store, loader).get() is None
    assert loader.calls == []


def test_get_loads_the_current_engine_once(store, archives):
    installed = store.install(archives[0], generation=1)
    loader = Loader()
    cache = EngineCache(store, loader)

    first = cache.get()

    assert (first.version, first.generation, first.manifest) == (installed.version, 1, installed.manifest)
    assert first.engine.publication_count == 3
    assert cache.get() is first and cache.loaded is first
    assert loader.calls == [installed.version]


def test_get_reloads_when_the_store_has_another_version(store, archives, caplog):
    store.install(archives[0], generation=1)
    loader = Loader()
    cache = EngineCache(store, loader)
    old = cache.get()

    new_installed = store.install(archives[1], generation=2)
    with caplog.at_level(logging.INFO, logger="recsys.cache"):
        new = cache.get()

    assert (new.version, new.generation) == (new_installed.version, 2)
    assert new.engine is not old.engine and new.engine.publication_count == 4
    assert loader.calls == [old.version, new.version]
    assert (
        f"version {new.version} (generation 2) in" in caplog.text and f"replacing version {old.version}" in caplog.text
    )


def test_a_new_generation_of_the_loaded_version_needs_no_reload(store, archives):
    store.install(archives[0], generation=1)
    loader = Loader()
    cache = EngineCache(store, loader)
    first = cache.get()

    store.install(archives[0], generation=2)  # e.g. a rollback to the version loaded here

    again = cache.get()
    assert again.engine is first.engine and (again.version, again.generation) == (first.version, 2)
    assert cache.get() is again
    assert loader.calls == [first.version]


def test_old_engine_is_served_while_a_new_one_loads(store, archives):
    store.install(archives[0], generation=1)
    loader = Loader()
    cache = EngineCache(store, loader)
    old = cache.get()
    new_installed = store.install(archives[1], generation=2)
    gate = loader.hold(new_installed.version)

    loading, box = in_thread(cache.get)
    assert loader.started[new_installed.version].wait(WAIT)
    served_meanwhile = [cache.get() for _ in range(3)]  # would block on the gate if get() waited
    gate.set()
    loading.join(WAIT)

    assert all(loaded is old for loaded in served_meanwhile)
    assert box[0].version == new_installed.version
    assert cache.get() is box[0]
    assert loader.calls == [old.version, new_installed.version]


def test_callers_wait_for_the_first_load(store, archives):
    installed = store.install(archives[0], generation=1)
    loader = Loader()
    gate = loader.hold(installed.version)
    cache = EngineCache(store, loader)

    first, first_box = in_thread(cache.get)
    assert loader.started[installed.version].wait(WAIT)
    others = [in_thread(cache.get) for _ in range(4)]
    gate.set()
    for thread, _ in [(first, first_box), *others]:
        thread.join(WAIT)

    results = [first_box[0]] + [box[0] for _, box in others]
    assert all(r is not None and r is results[0] for r in results)  # nobody got None, one engine for all
    assert loader.calls == [installed.version]


def test_a_failing_load_is_raised_and_the_old_engine_stays_in_service(store, archives, caplog):
    store.install(archives[0], generation=1)
    loader, clock = Loader(), Clock()
    cache = EngineCache(store, loader, retry_after=5, clock=clock)
    old = cache.get()
    new_installed = store.install(archives[1], generation=2)
    loader.failing.add(new_installed.version)

    with caplog.at_level(logging.ERROR, logger="recsys.cache"), pytest.raises(ValueError, match="cannot map"):
        cache.get()

    assert f"engine version {new_installed.version} failed to load; still serving version {old.version}" in caplog.text
    assert cache.get() is old and cache.get() is old  # no retry on every call
    assert loader.calls == [old.version, new_installed.version]

    clock.now += 5
    loader.failing.clear()
    assert cache.get().version == new_installed.version
    assert loader.calls == [old.version, new_installed.version, new_installed.version]


def test_a_failing_first_load_is_retried_only_after_a_pause(store, archives):
    installed = store.install(archives[0], generation=1)
    loader, clock = Loader(), Clock()
    loader.failing.add(installed.version)
    cache = EngineCache(store, loader, retry_after=5, clock=clock)

    with pytest.raises(ValueError):
        cache.get()
    clock.now += 4
    with pytest.raises(EngineLoadError) as caught:
        cache.get()
    assert f"engine version {installed.version} failed to load: cannot map" in str(caught.value)
    assert "next try is in 1s" in str(caught.value)
    assert isinstance(caught.value.__cause__, ValueError)
    assert loader.calls == [installed.version]

    clock.now += 1
    loader.failing.clear()
    assert cache.get().version == installed.version
    assert loader.calls == [installed.version, installed.version]


def test_a_failure_of_one_version_does_not_block_the_next(store, archives):
    installed = store.install(archives[0], generation=1)
    loader = Loader()
    loader.failing.add(installed.version)
    cache = EngineCache(store, loader, clock=Clock())
    with pytest.raises(ValueError):
        cache.get()
    newer = store.install(archives[1], generation=2)
    assert cache.get().version == newer.version


def test_close_closes_the_engine_and_refuses_later_calls(store, archives):
    store.install(archives[0], generation=1)
    cache = EngineCache(store, Loader())
    engine = cache.get().engine
    cache.close()
    assert engine.closed and cache.loaded is None
    with pytest.raises(RuntimeError, match="closed"):
        cache.get()
