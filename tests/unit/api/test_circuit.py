"""The API's circuit on Redis (recsys_api.circuit) and its use by TaskClient: while Redis is
known to be down a task is refused (503) before it is sent; while Redis answers nothing is
checked; after a failure one request at a time probes."""

from __future__ import annotations

import threading

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import Results

from recsys.cluster import TaskRecords
from recsys.errors import Unavailable
from recsys.kv import MemoryKV
from recsys_api.circuit import Circuit
from recsys_api.memory_results import MemoryResultBackend
from recsys_api.redis_results import TakingRedisBackend
from recsys_api.tasks import TaskClient, redis_errors, results_circuit

REFUSED = redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Redis:
    """A PING that fails while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        if self.down:
            raise REFUSED


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server() -> Redis:
    return Redis()


@pytest.fixture
def circuit(clock, server) -> Circuit:
    return Circuit(server.ping, redis_errors(), where="127.0.0.1:6379/0", trust=1.0, refuse=0.25, clock=clock)


def test_redis_is_pinged_only_when_it_last_answered_long_ago(circuit, clock, server):
    circuit.check("task 'recommend'")  # never heard of: ping
    clock.now += 0.5
    circuit.check("task 'recommend'")  # trusted
    circuit.succeeded()  # a result was read
    clock.now += 0.9
    circuit.check("task 'recommend'")
    assert server.pings == 1
    clock.now += 0.2
    circuit.check("task 'recommend'")
    assert server.pings == 2


def test_after_a_failure_tasks_are_refused_at_once_then_one_probe_closes_it(circuit, clock, server):
    # Given a wait that failed: Redis went down
    server.down = True
    circuit.failed(REFUSED)
    # Then tasks are refused without a PING, naming Redis and what happened
    with pytest.raises(Unavailable) as refused:
        circuit.check("task 'recommend'")
    message = str(refused.value)
    assert "Redis at 127.0.0.1:6379/0 is unreachable (ConnectionError: Error 111" in message
    assert "task 'recommend' was not sent" in message and "retry in a few seconds" in message
    assert server.pings == 0 and circuit.open
    # When the refusal window has passed, the next task probes; a failed probe refuses again
    clock.now += 0.3
    with pytest.raises(Unavailable):
        circuit.check("task 'recommend'")
    assert server.pings == 1
    clock.now += 0.1
    with pytest.raises(Unavailable):
        circuit.check("task 'recommend'")
    assert server.pings == 1
    # When Redis is back, the first probe after the window closes the circuit
    server.down = False
    clock.now += 0.3
    circuit.check("task 'recommend'")
    assert not circuit.open and server.pings == 2
    circuit.check("task 'recommend'")
    assert server.pings == 2


def test_one_request_probes_at_a_time(clock, server):
    entered, release = threading.Event(), threading.Event()

    def slow_ping() -> None:
        entered.set()
        release.wait(10)
        raise REFUSED

    circuit = Circuit(slow_ping, redis_errors(), clock=clock)
    circuit.failed(REFUSED)
    clock.now += 1.0
    errors: list[BaseException] = []

    def probe() -> None:
        try:
            circuit.check("task 'recommend'")
        except Unavailable as exc:
            errors.append(exc)

    prober = threading.Thread(target=probe)
    prober.start()
    assert entered.wait(10)
    with pytest.raises(Unavailable):  # refused at once while the other request probes
        circuit.check("task 'recommend'")
    release.set()
    prober.join(10)
    assert len(errors) == 1


def test_a_probe_in_progress_does_not_refuse_while_redis_last_answered(clock, server):
    entered, release = threading.Event(), threading.Event()

    def slow_ping() -> None:
        entered.set()
        release.wait(10)

    circuit = Circuit(slow_ping, redis_errors(), clock=clock)
    prober = threading.Thread(target=lambda: circuit.check("task 'recommend'"))
    prober.start()
    assert entered.wait(10)
    circuit.check("task 'recommend'")  # no failure known: not refused
    release.set()
    prober.join(10)


# -- TaskClient --------------------------------------------------------------------------


class FlakyBackend(MemoryResultBackend):
    down = False

    def get_result(self, message, *, block=False, timeout=None):
        if self.down:
            raise REFUSED
        return super().get_result(message, block=block, timeout=timeout)


def task_client(circuit: Circuit | None, backend=None):
    broker = StubBroker()
    backend = backend if backend is not None else FlakyBackend()
    broker.add_middleware(Results(backend=backend))
    broker.declare_queue("q")
    return TaskClient(broker, backend, TaskRecords(MemoryKV(), 60), result_ttl=60, circuit=circuit), broker


def test_a_task_is_not_sent_while_the_circuit_refuses(circuit, server):
    tasks, broker = task_client(circuit)
    server.down = True
    message = tasks.message("recommend", "q", {"request": {}})
    with pytest.raises(Unavailable, match="task 'recommend' was not sent"):
        tasks.send(message, record=False)
    assert broker.queues["q"].qsize() == 0


def test_a_failed_wait_opens_the_circuit_and_a_read_result_closes_it(circuit, server):
    backend = FlakyBackend()
    tasks, broker = task_client(circuit, backend)
    sent = tasks.send(tasks.message("recommend", "q", {}), record=False)
    assert broker.queues["q"].qsize() == 1
    backend.down = True
    with pytest.raises(Unavailable, match="result cannot be read"):
        tasks.wait(sent, 1)
    assert circuit.open
    with pytest.raises(Unavailable, match="was not sent"):
        tasks.send(tasks.message("recommend", "q", {}), record=False)
    assert broker.queues["q"].qsize() == 1  # nothing more was sent
    backend.down = False
    backend.store_result(sent, {"ok": True}, 60_000)
    assert tasks.wait(sent, 1) == {"ok": True}
    assert not circuit.open


def test_only_a_backend_with_a_ping_gets_a_circuit():
    assert results_circuit(MemoryResultBackend(), None) is None
    circuit = results_circuit(TakingRedisBackend(client=redis.Redis(port=1)), "redis://:secret@10.0.0.1:6379/2")
    assert isinstance(circuit, Circuit) and circuit.where == "10.0.0.1:6379/2"


def test_the_message_names_the_actor(circuit, server):
    tasks, _ = task_client(circuit)
    server.down = True
    message = dramatiq.Message(queue_name="q", actor_name="build_index", args=(), kwargs={}, options={})
    with pytest.raises(Unavailable, match="task 'build_index' was not sent"):
        tasks.send(message)
