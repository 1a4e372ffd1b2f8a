"""The broker from the settings, and the fanout broker's handling of the broadcast queue
(without a server: construction never connects)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend
from periodiq import PeriodiqMiddleware

from recsys.config import Settings
from recsys_api.memory_results import MemoryResultBackend
from recsys_workers.broker import create_broker
from recsys_workers.fanout import FanoutRabbitmqBroker, broadcast_queue_name

UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/%2F"
ROOT = Path(__file__).resolve().parents[3]


def middleware_of(broker, kind):
    return [m for m in broker.middleware if isinstance(m, kind)]


def test_embedded_mode_is_a_stub_broker_with_in_memory_results():
    broker = create_broker(Settings(result_ttl=120))
    assert isinstance(broker, StubBroker)
    [results] = middleware_of(broker, Results)
    assert isinstance(results.backend, MemoryResultBackend)
    assert results.result_ttl == 120_000
    assert broker.get_results_backend() is results.backend
    assert middleware_of(broker, CurrentMessage) and middleware_of(broker, PeriodiqMiddleware)


def test_a_shared_result_backend_can_be_passed_in():
    backend = MemoryResultBackend()
    assert create_broker(Settings(), result_backend=backend).get_results_backend() is backend


def test_rabbitmq_mode_builds_without_connecting():
    settings = Settings(broker_url=UNREACHABLE, results_url="redis://127.0.0.1:1/0", broadcast_exchange="bx")
    broker = create_broker(settings)
    assert isinstance(broker, FanoutRabbitmqBroker)
    assert broker.broadcast_queue == "bx"
    assert isinstance(broker.get_results_backend(), RedisBackend)


def test_the_broadcast_queue_is_recorded_but_never_declared_durable():
    broker = FanoutRabbitmqBroker(url=UNREACHABLE, broadcast_queue="recsys.broadcast")
    dramatiq.actor(lambda: None, broker=broker, actor_name="b", queue_name="recsys.broadcast")
    dramatiq.actor(lambda: None, broker=broker, actor_name="r", queue_name="recsys.requests")
    assert {"recsys.broadcast", "recsys.requests"} <= broker.get_declared_queues()
    # No delay queue (so no .DQ consumer) and nothing pending creation for the broadcast
    assert "recsys.broadcast.DQ" not in broker.get_declared_delay_queues()
    assert "recsys.broadcast" not in broker.queues_pending
    assert "recsys.requests" in broker.queues_pending


def test_a_broadcast_cannot_be_delayed():
    broker = FanoutRabbitmqBroker(url=UNREACHABLE, broadcast_queue="recsys.broadcast")
    actor = dramatiq.actor(lambda: None, broker=broker, actor_name="b", queue_name="recsys.broadcast")
    with pytest.raises(ValueError, match="cannot be delayed"):
        actor.send_with_options(delay=1000)


def test_broadcast_queue_names_say_whose_they_are():
    name = broadcast_queue_name("recsys.broadcast", host="worker 7/eu", pid=123)
    assert re.fullmatch(r"recsys\.broadcast\.worker-7-eu\.123\.[0-9a-f]{6}", name)
    assert broadcast_queue_name("x", host="h", pid=1) != broadcast_queue_name("x", host="h", pid=1)


def test_the_workers_import_no_falcon_although_they_publish_with_the_apis_publisher():
    code = (
        "import sys\n"
        "import recsys_workers.app, recsys_workers.broker, recsys_workers.fanout\n"
        "from recsys_workers.fanout import publish_broadcast\n"
        "from recsys_api.broadcast import publish_broadcast as the_apis\n"
        "assert publish_broadcast is the_apis\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'falcon')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
