"""The console's queue counts on a real RabbitMQ: from the management API (ready, unacked,
consumers; .ci/run enables the plugin), over AMQP (ready) when it is not configured or does
not answer, and "n/a" when neither does."""

from __future__ import annotations

import os
import socket
import uuid

import pika
import pytest

from recsys.config import Settings
from recsys_api.queues import QueueStats
from tests.conftest import unavailable
from tests.support.processes import free_port, wait_until

pytestmark = pytest.mark.integration

MANAGEMENT = os.environ.get("TEST_RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")


@pytest.fixture
def queues(rabbitmq_url: str):
    """Request and build queues of this test's own with 3 and 1 messages waiting."""
    tag = f"console-{uuid.uuid4().hex[:6]}"
    settings = Settings(broker_url=rabbitmq_url, request_queue=f"{tag}.requests", build_queue=f"{tag}.builds",
                        broadcast_exchange=f"{tag}.broadcast")
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    channel = connection.channel()
    for name, count in ((settings.request_queue, 3), (settings.build_queue, 1)):
        channel.queue_declare(name, durable=True)
        for n in range(count):
            channel.basic_publish("", name, f"message {n}".encode())
    channel.queue_declare(f"{tag}.broadcast.host.1.abc", exclusive=True)
    try:
        yield settings
    finally:
        for name in (settings.request_queue, settings.build_queue):
            channel.queue_delete(name)
        connection.close()


def _management_up() -> None:
    host, _, port = MANAGEMENT.removeprefix("http://").partition(":")
    try:
        with socket.create_connection((host, int(port or 15672)), timeout=1):
            return
    except OSError:
        unavailable(f"RabbitMQ's management API at {MANAGEMENT} (rabbitmq-plugins enable rabbitmq_management)")


def counts(snapshot: dict) -> dict[str, tuple]:
    return {q["name"]: (q["ready"], q["unacked"], q["consumers"]) for q in snapshot["queues"]}


def test_counts_from_the_management_api(queues: Settings) -> None:
    _management_up()
    stats = QueueStats(queues.replace(broker_management_url=MANAGEMENT), cache_seconds=0)

    # the management API's figures lag by its statistics interval (5 s by default)
    snapshot = wait_until(lambda: (s := stats.snapshot())["queues"][0]["ready"] == 3 and s, timeout=30,
                          what="the management API to count the messages")

    assert snapshot["source"] == "management" and snapshot["error"] is None
    found = counts(snapshot)
    assert found[queues.request_queue] == (3, 0, 0)
    assert found[queues.build_queue] == (1, 0, 0)
    assert found[queues.request_queue + ".XQ"] == (None, None, None), "no dead-letter queue declared"
    broadcasts = next(q for q in snapshot["queues"] if q["name"] == f"{queues.broadcast_exchange}.*")
    assert broadcasts["queues"] == 1


def test_counts_over_amqp_without_the_management_api(queues: Settings) -> None:
    snapshot = QueueStats(queues, cache_seconds=0).snapshot()

    assert snapshot["source"] == "amqp" and snapshot["error"] is None
    assert counts(snapshot)[queues.request_queue] == (3, None, 0)
    assert counts(snapshot)[queues.build_queue + ".XQ"] == (None, None, None)


def test_a_management_api_that_does_not_answer_falls_back_to_amqp(queues: Settings) -> None:
    stats = QueueStats(queues.replace(broker_management_url=f"http://127.0.0.1:{free_port()}"), cache_seconds=0)

    snapshot = stats.snapshot()

    assert snapshot["source"] == "amqp"
    assert snapshot["error"].startswith("management: ConnectError")
    assert counts(snapshot)[queues.request_queue][0] == 3


def test_nothing_answering_is_not_available(queues: Settings) -> None:
    stats = QueueStats(queues.replace(broker_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"), cache_seconds=0)

    snapshot = stats.snapshot()

    assert snapshot["source"] == "n/a" and snapshot["error"].startswith("amqp: ")
    assert {q["ready"] for q in snapshot["queues"]} == {None}


def test_a_snapshot_is_reused_for_a_while(queues: Settings) -> None:
    now = [0.0]
    stats = QueueStats(queues, clock=lambda: now[0], cache_seconds=2.0)
    first = stats.snapshot()
    assert stats.snapshot() is first
    now[0] = 2.5
    assert stats.snapshot() is not first
