"""The workers' result store (recsys_workers.results) on a fake Redis client, driven through
Dramatiq's own worker thread: answered markers, redelivered tasks that are not run again,
and tasks skipped (not computed, nothing stored, one WARNING) while Redis is down."""

from __future__ import annotations

import logging
from queue import PriorityQueue
from typing import Any

import dramatiq
import dramatiq.worker
import pytest
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from recsys_workers.results import ANSWERED_SUFFIX, OUTAGE_SETTLE, ResultGuard, WorkerRedisBackend

QUEUE = "faults.requests"


class FakePipeline:
    def __init__(self, client: FakeRedis) -> None:
        self.client = client
        self.commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __enter__(self) -> FakePipeline:
        return self

    def __exit__(self, *exc: object) -> None: ...

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.commands.append((name, args, kwargs))

    def execute(self) -> None:
        self.client.check()
        for name, args, kwargs in self.commands:
            getattr(self.client, "do_" + name)(*args, **kwargs)


class FakeRedis:
    """The few commands the backend uses; ``down`` makes every command fail as redis-py does."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ttls: dict[str, int] = {}
        self.down = False
        self.pings = 0

    def check(self) -> None:
        if self.down:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    def pipeline(self) -> FakePipeline:
        return FakePipeline(self)

    def ping(self) -> bool:
        self.pings += 1
        self.check()
        return True

    def exists(self, *keys: str) -> int:
        self.check()
        return sum(key in self.data for key in keys)

    def do_delete(self, key: str) -> None:
        self.data.pop(key, None)

    def do_lpush(self, key: str, value: bytes) -> None:
        self.data.setdefault(key, []).insert(0, value)

    def do_pexpire(self, key: str, ms: int) -> None:
        self.ttls[key] = ms

    def do_set(self, key: str, value: bytes, px: int) -> None:
        self.data[key], self.ttls[key] = value, px


class Finished:
    """Stands in for the consumer thread: records the messages handed back for ack/nack."""

    def __init__(self) -> None:
        self.messages: list[MessageProxy] = []

    def post_process_message(self, message: MessageProxy) -> None:
        self.messages.append(message)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self) -> None:
        self.client = FakeRedis()
        self.clock = Clock()
        self.backend = WorkerRedisBackend(client=self.client, where="127.0.0.1:6379/0", clock=self.clock)
        self.broker = StubBroker()
        self.broker.add_middleware(Results(backend=self.backend, result_ttl=600_000))
        self.broker.add_middleware(ResultGuard(self.backend))
        self.runs: list[Any] = []

        def recommend(request: Any) -> dict[str, Any]:
            self.runs.append(request)
            return {"recommendations": [], "request": request}

        def ping() -> None:
            self.runs.append("ping")

        dramatiq.actor(recommend, broker=self.broker, actor_name="recommend", queue_name=QUEUE, store_results=True,
                       max_retries=0)
        dramatiq.actor(ping, broker=self.broker, actor_name="ping", queue_name=QUEUE, max_retries=0)
        self.finished = Finished()
        self.thread = dramatiq.worker.WorkerThread(
            broker=self.broker, consumers={QUEUE: self.finished}, work_queue=PriorityQueue(), worker_timeout=100,
        )

    def message(self, actor: str = "recommend", request: Any = "q", *, redelivered: bool = False) -> MessageProxy:
        message = dramatiq.Message(queue_name=QUEUE, actor_name=actor, args=(request,) if actor == "recommend" else (),
                                   kwargs={}, options={})
        proxy = MessageProxy(message)
        proxy.redelivered = redelivered  # as dramatiq's RabbitMQ proxies have it
        return proxy

    def run(self, proxy: MessageProxy) -> MessageProxy:
        """What a worker thread does with a message it took off its work queue."""
        self.thread.work_queue.put(0)
        self.thread.work_queue.get()
        self.thread.process_message(proxy)
        return proxy

    def key(self, proxy: MessageProxy) -> str:
        return self.backend.build_message_key(proxy)


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_a_stored_result_is_dramatiqs_format_plus_an_answered_marker(h):
    proxy = h.run(h.message(request="first"))
    key = h.key(proxy)
    reference = FakeRedis()  # what Dramatiq's own RedisBackend stores for the same result
    RedisBackend(client=reference).store_result(proxy, {"recommendations": [], "request": "first"}, 600_000)
    assert h.client.data[key] == reference.data[key]
    assert h.client.ttls[key] == reference.ttls[key] == 600_000
    assert h.client.data[key + ANSWERED_SUFFIX] == b"1"
    assert h.client.ttls[key + ANSWERED_SUFFIX] == h.backend.answered_ttl_ms
    assert h.finished.messages == [proxy] and not proxy.failed


def test_the_marker_never_outlives_the_result(h):
    short = WorkerRedisBackend(client=h.client, where="x", answered_ttl=120)
    short.store_result(h.message(), {"ok": True}, 10_000)
    [marker] = [k for k in h.client.data if k.endswith(ANSWERED_SUFFIX)]
    assert h.client.ttls[marker] == 10_000


def test_a_redelivered_task_whose_result_was_taken_is_not_run_again(h, caplog):
    # Given a task answered once, and its result popped by the API (BRPOP)
    first = h.run(h.message(request="once"))
    del h.client.data[h.key(first)]
    # When RabbitMQ delivers the same message again (its ack was lost with a connection)
    again = h.message(request="once", redelivered=True)
    again._message = first._message
    with caplog.at_level(logging.INFO):
        h.run(again)
    # Then the actor did not run, nothing was stored (Dramatiq would store None), it is acked
    assert h.runs == ["once"]
    assert h.key(first) not in h.client.data
    assert h.finished.messages[-1] is again and not again.failed
    assert "was redelivered after its result was stored: not run again" in caplog.text
    assert "was skipped" not in caplog.text


def test_a_redelivered_task_that_never_stored_a_result_runs(h):
    h.run(h.message(request="lost before its result", redelivered=True))
    assert h.runs == ["lost before its result"]


def test_while_redis_is_down_tasks_are_skipped_with_one_warning_and_no_traceback(h, caplog):
    with caplog.at_level(logging.INFO):
        # Given a task whose result cannot be stored: Redis went down while it ran
        h.client.down = True
        h.run(h.message(request="computed"))
        # When more tasks arrive while Redis stays down
        later = [h.run(h.message(request=f"skipped {n}")) for n in range(3)]
        # Then they are not computed, acked, and the log has one WARNING, no CRITICAL
        assert h.runs == ["computed"]
        assert all(m in h.finished.messages and not m.failed for m in later)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.name for r in warnings] == ["recsys_workers.results"], [r.getMessage() for r in warnings]
        assert "Redis at 127.0.0.1:6379/0 is unreachable" in warnings[0].getMessage()
        assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
        # When Redis is back, the next task runs and stores its result; the end is logged
        h.client.down = False
        h.clock.now += OUTAGE_SETTLE
        back = h.run(h.message(request="after"))
    assert h.runs == ["computed", "after"]
    assert h.key(back) in h.client.data
    assert "reachable again after" in caplog.text and "1 results were lost, 3 tasks were skipped" in caplog.text


def test_a_task_arriving_just_after_redis_is_back_runs(h):
    h.client.down = True
    h.run(h.message(request="lost"))
    h.client.down = False  # back before the next task: its PING succeeds
    h.run(h.message(request="runs"))
    assert h.runs == ["lost", "runs"]
    h.clock.now += OUTAGE_SETTLE
    h.run(h.message(request="and ends the outage"))
    assert not h.backend.outage.active


def test_connections_dying_one_after_the_other_make_one_outage(h, caplog):
    # Given the first store of an outage failed, and another connection still worked
    # for a moment (Redis's connections are cut one by one)
    with caplog.at_level(logging.INFO, logger="recsys_workers.results"):
        h.client.down = True
        h.run(h.message(request="a"))
        h.client.down = False
        h.run(h.message(request="b"))
        h.client.down = True
        h.run(h.message(request="c"))
    # Then the log has one WARNING and no end: it is one outage
    lines = [r for r in caplog.records if r.name == "recsys_workers.results"]
    assert [r.levelname for r in lines] == ["WARNING"], [r.getMessage() for r in lines]


def test_redis_is_not_pinged_while_it_works(h):
    for n in range(3):
        h.run(h.message(request=n, redelivered=False))
    assert h.client.pings == 0


def test_tasks_that_store_no_result_are_left_alone(h):
    h.client.down = True
    h.run(h.message(request="x"))  # starts the outage
    h.run(h.message("ping", redelivered=True))
    assert h.runs == ["x", "ping"]
