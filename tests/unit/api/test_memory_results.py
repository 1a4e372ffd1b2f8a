"""MemoryResultBackend: waiters wake when a result is stored; expired results go."""

from __future__ import annotations

import threading

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import ResultFailure, ResultMissing, Results, ResultTimeout

from recsys_api.memory_results import MemoryResultBackend


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message(n: int = 0) -> dramatiq.Message:
    return dramatiq.Message(queue_name="q", actor_name="a", args=(n,), kwargs={}, options={}, message_id=f"id-{n}")


def test_a_stored_result_is_read_back_and_a_missing_one_says_so():
    backend = MemoryResultBackend()
    with pytest.raises(ResultMissing):
        backend.get_result(message())
    backend.store_result(message(), {"answer": [1, 2]}, ttl=60_000)
    assert backend.get_result(message()) == {"answer": [1, 2]}


def test_a_blocked_waiter_wakes_when_its_result_is_stored_without_polling(monkeypatch):
    # Given a waiter blocked for up to an hour, and no sleep-based polling allowed
    import dramatiq.results.backend as base

    monkeypatch.setattr(base.time, "sleep", lambda seconds: pytest.fail("the backend polled with sleep()"))
    backend = MemoryResultBackend()
    waiting, got = threading.Event(), []

    def wait() -> None:
        waiting.set()
        got.append(backend.get_result(message(), block=True, timeout=3_600_000))

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    assert waiting.wait(10)
    # When another thread stores the result (and an unrelated one first)
    backend.store_result(message(1), "other", ttl=60_000)
    backend.store_result(message(), "mine", ttl=60_000)
    # Then the waiter returns it long before its hour is up
    thread.join(30)
    assert not thread.is_alive()
    assert got == ["mine"]


def test_a_blocked_wait_times_out():
    with pytest.raises(ResultTimeout):
        MemoryResultBackend().get_result(message(), block=True, timeout=20)


def test_expired_results_are_dropped_so_memory_stays_bounded():
    clock = Clock()
    backend = MemoryResultBackend(clock=clock)
    for n in range(500):
        backend.store_result(message(n), n, ttl=10_000)
    assert len(backend) == 500
    clock.now += 11
    backend.store_result(message(999), "fresh", ttl=10_000)
    assert len(backend) == 1
    with pytest.raises(ResultMissing):
        backend.get_result(message(3))
    assert backend.get_result(message(999)) == "fresh"


def test_storing_a_key_again_keeps_it_until_its_new_expiry():
    clock = Clock()
    backend = MemoryResultBackend(clock=clock)
    backend.store_result(message(), "first", ttl=10_000)
    clock.now += 5
    backend.store_result(message(), "second", ttl=10_000)
    clock.now += 6  # past the first expiry, not the second
    assert backend.get_result(message()) == "second"


def test_a_failed_actor_reads_as_a_result_failure():
    backend = MemoryResultBackend()
    backend.store_exception(message(), ValueError("broken"), ttl=60_000)
    with pytest.raises(ResultFailure, match="broken"):
        backend.get_result(message())


def test_it_works_as_the_results_middleware_backend_of_a_worker():
    broker = StubBroker()
    backend = MemoryResultBackend()
    broker.add_middleware(Results(backend=backend))

    @dramatiq.actor(broker=broker, store_results=True)
    def double(x):
        return 2 * x

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert double.send(21).get_result(backend=backend, block=True, timeout=10_000) == 42
    finally:
        worker.stop()


def test_a_forgotten_result_is_gone_and_the_expiry_heap_stays_bounded():
    # Given many results stored and each forgotten by its reader (the API's 200 path)
    backend = MemoryResultBackend(clock=Clock())
    for n in range(1000):
        backend.store_result(message(n), n, ttl=600_000)
        assert backend.get_result(message(n)) == n
        backend.forget(message(n))
    # Then nothing is held, and the heap of expiries did not keep the 1,000 stale entries
    assert len(backend) == 0
    assert len(backend._expiries) <= 64
    with pytest.raises(ResultMissing):
        backend.get_result(message(999))
