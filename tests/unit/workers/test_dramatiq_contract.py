"""What recsys_workers relies on in Dramatiq and periodiq. These fail loudly when an
upgrade changes it; read the test's docstring for what depends on it.

Pinned in setup.cfg: dramatiq>=2.2.1,<2.3 and periodiq>=0.14,<0.15.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import time
import types
from datetime import datetime

import dramatiq
import periodiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Middleware, MiddlewareError
from dramatiq.middleware.time_limit import TimeLimitExceeded


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def test_the_tested_versions_are_installed():
    """setup.cfg pins these ranges; bump them only after running these tests."""
    from importlib.metadata import version

    assert (2, 2, 1) <= _release(dramatiq.__version__) < (2, 3)
    assert (0, 14) <= _release(version("periodiq")) < (0, 15)


def test_exceptions_raised_in_before_process_message_are_swallowed():
    """EngineMiddleware hands its outcome to the actor through a context variable
    because the broker logs and swallows what a before_* hook raises."""
    broker = StubBroker()

    class Raising(Middleware):
        def before_process_message(self, broker, message):
            raise RuntimeError("from a middleware hook")

    broker.add_middleware(Raising())
    ran = threading.Event()

    @dramatiq.actor(broker=broker, max_retries=0)
    def task():
        ran.set()

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        task.send()
        broker.join(task.queue_name, timeout=10_000)
    finally:
        worker.stop()
    assert ran.is_set(), "the actor ran although its middleware raised: the error was swallowed"


def test_a_middleware_error_in_before_declare_actor_propagates():
    """EngineMiddleware refuses an unknown engine option with a MiddlewareError."""
    broker = StubBroker()

    class Refusing(Middleware):
        def before_declare_actor(self, broker, actor):
            raise MiddlewareError("refused")

    broker.add_middleware(Refusing())
    with pytest.raises(MiddlewareError, match="refused"):
        dramatiq.actor(lambda: None, broker=broker, actor_name="x")


def test_the_worker_runs_fetched_messages_lowest_priority_number_first():
    """engine_updated (priority 0) must overtake requests (10) a process has fetched."""
    broker = StubBroker()
    running, gate, order = threading.Event(), threading.Event(), []

    @dramatiq.actor(broker=broker, queue_name="requests", priority=10, max_retries=0)
    def request(n):
        if n == 0:
            running.set()
            gate.wait(120)
        order.append(f"request-{n}")

    @dramatiq.actor(broker=broker, queue_name="broadcast", priority=0, max_retries=0)
    def broadcast():
        order.append("broadcast")

    def fetched(count):
        deadline = time.monotonic() + 30
        while worker.work_queue.qsize() < count:
            assert time.monotonic() < deadline, f"the worker never held {count} fetched message(s)"
            time.sleep(0.01)

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        request.send(0)  # occupies the only thread until the gate opens
        assert running.wait(30)
        request.send(1)
        fetched(1)
        broadcast.send()
        fetched(2)
        gate.set()
        broker.join("requests", timeout=30_000)
        broker.join("broadcast", timeout=30_000)
    finally:
        gate.set()
        worker.stop()
    assert order == ["request-0", "broadcast", "request-1"]


def test_the_rabbitmq_broker_methods_we_override_keep_their_signatures():
    """FanoutRabbitmqBroker overrides declare_queue, consume and enqueue, and records
    the broadcast queue in ``queues`` (a set) without ``queues_pending``."""
    assert list(inspect.signature(RabbitmqBroker.declare_queue).parameters) == ["self", "queue_name", "ensure"]
    assert list(inspect.signature(RabbitmqBroker.consume).parameters) == ["self", "queue_name", "prefetch", "timeout"]
    assert list(inspect.signature(RabbitmqBroker.enqueue).parameters) == ["self", "message", "delay"]
    broker = RabbitmqBroker(url="amqp://guest:guest@127.0.0.1:1/none")
    assert isinstance(broker.queues, set) and isinstance(broker.queues_pending, set)
    broker.declare_queue("q")
    assert "q" in broker.queues_pending and "q.DQ" in broker.get_declared_delay_queues()


def test_the_worker_consumes_each_declared_queue_and_delay_queue():
    """The broadcast queue gets a consumer because it is declared (no delay queue)."""
    from dramatiq.worker import _WorkerMiddleware

    assert hasattr(_WorkerMiddleware, "after_declare_queue") and hasattr(_WorkerMiddleware, "after_declare_delay_queue")
    broker = StubBroker()
    dramatiq.actor(lambda: None, broker=broker, actor_name="a", queue_name="alpha")
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert set(worker.consumers) == {"alpha", "alpha.DQ"}
    finally:
        worker.stop()


def test_time_limit_interrupts_are_base_exceptions():
    """Actors catch TimeLimitExceeded explicitly: ``except Exception`` would miss it."""
    assert not issubclass(TimeLimitExceeded, Exception)
    assert issubclass(TimeLimitExceeded, BaseException)


def test_current_message_is_available_to_actors():
    broker = StubBroker()
    broker.add_middleware(CurrentMessage())
    seen = []

    @dramatiq.actor(broker=broker, max_retries=0)
    def task():
        seen.append(CurrentMessage.get_current_message().message_id)

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        message = task.send()
        broker.join(task.queue_name, timeout=10_000)
    finally:
        worker.stop()
    assert seen == [message.message_id]


def test_periodiq_sends_ticks_with_scheduled_at():
    """scheduled_build dedupes ticks on the ``scheduled_at`` message option."""
    broker = StubBroker()
    broker.add_middleware(periodiq.PeriodiqMiddleware())
    tick = dramatiq.actor(lambda: None, broker=broker, actor_name="tick", periodic=periodiq.cron("* * * * *"))
    import pendulum

    now = pendulum.datetime(2026, 3, 1, 3, 0, 0)
    periodiq.Scheduler(actors=[tick]).send_actors([tick], now=now)
    encoded = broker.queues[tick.queue_name].get_nowait()
    message = dramatiq.Message.decode(encoded)
    assert message.options["scheduled_at"] == str(now)
    assert datetime.fromisoformat(message.options["scheduled_at"]).isoformat() == "2026-03-01T03:00:00+00:00"


def test_periodiq_fails_without_a_periodic_actor(monkeypatch):
    """Why `periodiq recsys_workers` idles when RECSYS_REBUILD_CRON is empty."""
    module = types.ModuleType("no_periodic_actors")
    broker = StubBroker()
    module.broker = broker
    dramatiq.actor(lambda: None, broker=broker, actor_name="plain")
    monkeypatch.setitem(sys.modules, "no_periodic_actors", module)
    args = periodiq.make_argument_parser().parse_args(["no_periodic_actors:broker"])
    root = logging.getLogger()
    level = root.level
    try:
        assert periodiq.main(args) == 1
    finally:
        root.setLevel(level)  # periodiq.main sets the root logger's level


# -- what recsys_workers.reconnect and recsys_workers.results rely on -----------------------


def test_a_consumer_thread_reads_its_restart_delay_when_it_restarts(monkeypatch):
    """set_restart_delay sets dramatiq.worker.CONSUMER_RESTART_DELAY_SECS after Dramatiq read
    the environment: the consumer thread must look the constant up at each restart."""
    from queue import PriorityQueue

    import dramatiq.worker
    from dramatiq.errors import ConnectionClosed

    class Down(StubBroker):
        def consume(self, queue_name, prefetch=1, timeout=100):
            raise ConnectionClosed(RuntimeError("connection refused"))

    thread = dramatiq.worker._ConsumerThread(broker=Down(), queue_name="q", prefetch=1, work_queue=PriorityQueue(),
                                             worker_timeout=100)
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        thread.running = False

    monkeypatch.setattr(dramatiq.worker, "CONSUMER_RESTART_DELAY_SECS", 0.123)
    monkeypatch.setattr(dramatiq.worker.time, "sleep", sleep)
    thread.run()
    assert slept == [0.123]


def _process_skipped(broker, caplog):
    """Run one message through Dramatiq's worker thread with a middleware that skips it."""
    from queue import PriorityQueue

    import dramatiq.worker
    from dramatiq.broker import MessageProxy
    from dramatiq.middleware import SkipMessage

    class Skipping(Middleware):
        def before_process_message(self, broker, message):
            raise SkipMessage("skipped")

    broker.add_middleware(Skipping())
    actor = dramatiq.actor(lambda: "ran", broker=broker, actor_name="task", store_results=True)

    class Done:
        def post_process_message(self, message):
            pass

    work_queue = PriorityQueue()
    work_queue.put(0)
    work_queue.get()
    thread = dramatiq.worker.WorkerThread(broker=broker, consumers={actor.queue_name: Done()},
                                          work_queue=work_queue, worker_timeout=100)
    message = MessageProxy(actor.message())
    with caplog.at_level(logging.WARNING, logger="dramatiq.worker.WorkerThread"):
        thread.process_message(message)
    return message


def test_a_skipped_message_is_logged_by_the_worker_thread_and_stores_none(caplog):
    """ResultGuard's log filter matches this line, and its backend refuses this None: a
    client polling a skipped task would otherwise read None as its answer."""
    from dramatiq.results import Results
    from dramatiq.results.backends import StubBackend

    broker = StubBroker()
    backend = StubBackend()
    broker.add_middleware(Results(backend=backend))
    message = _process_skipped(broker, caplog)
    [record] = [r for r in caplog.records if r.name == "dramatiq.worker.WorkerThread"]
    assert record.msg == "Message %s was skipped." and record.args[0] is message
    assert backend.get_result(message) is None  # stored: None


def test_only_dramatiqs_own_results_class_counts_as_the_results_middleware():
    """Why ResultGuard is a middleware beside Results, not a Results subclass: with a
    subclass, the worker would warn for every task that returns a value."""
    import dramatiq.worker
    from dramatiq.results import Results
    from dramatiq.results.backends import StubBackend

    class Sub(Results):
        pass

    broker = StubBroker()
    broker.add_middleware(Sub(backend=StubBackend()))
    assert not dramatiq.worker.has_results_middleware(broker)
