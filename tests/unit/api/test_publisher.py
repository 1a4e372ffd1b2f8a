"""The API's broker notices closed RabbitMQ connections (recsys_api.publisher), and a
request whose message may have been lost publishes it again (TaskClient.wait), on a fake
pika connection: pika writes a message into a socket whose peer has closed without an
error, so without this the request waits for its full timeout."""

from __future__ import annotations

import logging

import dramatiq
import pika
import pytest
from dramatiq.results import ResultTimeout

from recsys.cluster import TaskRecords
from recsys.kv import MemoryKV
from recsys_api import services
from recsys_api.publisher import TaskBroker
from recsys_api.tasks import RECHECK_AFTER_MS, TaskClient
from tests.support.fake_pika import FakeConnection

URL = "amqp://guest:guest@127.0.0.1:1/%2F"


@pytest.fixture
def broker(monkeypatch) -> TaskBroker:
    FakeConnection.made.clear()
    monkeypatch.setattr(pika, "BlockingConnection", FakeConnection)
    return TaskBroker(url=URL, middleware=[])


def message(queue: str = "q") -> dramatiq.Message:
    return dramatiq.Message(queue_name=queue, actor_name="recommend", args=(), kwargs={}, options={})


def published(connection: FakeConnection) -> list[str]:
    return [dramatiq.Message.decode(body).message_id for ch in connection.channels for body in ch.published]


def test_the_deployment_uses_the_task_broker():
    assert isinstance(services.rabbitmq_broker(URL), TaskBroker)


def test_a_publish_after_the_peer_closed_goes_out_on_a_new_connection(broker, caplog):
    first = broker.enqueue(message())
    [old] = FakeConnection.made
    old.close_by_peer()  # RabbitMQ closed it; pika has not read that yet
    with caplog.at_level(logging.INFO, logger="recsys_api.publisher"):
        second = broker.enqueue(message())
    [_, new] = FakeConnection.made
    assert published(old) == [first.message_id] and published(new) == [second.message_id]
    assert not any(ch.lost for ch in old.channels)
    assert "connection has closed" in caplog.text


def test_publish_lost_tells_whether_the_last_publish_connection_closed(broker):
    broker.enqueue(message())
    assert broker.publish_lost() is False
    [connection] = FakeConnection.made
    connection.close_by_peer()
    assert broker.publish_lost() is True
    broker.enqueue(message())  # on a new connection
    assert len(FakeConnection.made) == 2 and broker.publish_lost() is False


class SlowThenAnswers:
    """A result backend whose first wait times out (the RECHECK_AFTER_MS slice) and whose
    second returns the result; records the timeouts it was given."""

    def __init__(self) -> None:
        self.timeouts: list[int] = []

    def take_result(self, message, *, timeout):
        self.timeouts.append(timeout)
        if len(self.timeouts) == 1:
            raise ResultTimeout(message)
        return {"ok": True}


def test_a_request_whose_publish_was_lost_sends_it_again(broker):
    backend = SlowThenAnswers()
    tasks = TaskClient(broker, backend, TaskRecords(MemoryKV(), 60), result_ttl=60)
    sent = tasks.send(message(), record=False)
    [old] = FakeConnection.made
    # The connection closed right after the publish: the message may never have arrived
    old.close_by_peer()
    assert tasks.wait(sent, 30, take=True) == {"ok": True}
    assert backend.timeouts == [RECHECK_AFTER_MS, 30_000 - RECHECK_AFTER_MS]
    [_, new] = FakeConnection.made
    assert published(new) == [sent.message_id]  # the same message, again


def test_a_slow_task_on_a_live_connection_is_not_sent_twice(broker):
    backend = SlowThenAnswers()
    tasks = TaskClient(broker, backend, TaskRecords(MemoryKV(), 60), result_ttl=60)
    sent = tasks.send(message(), record=False)
    assert tasks.wait(sent, 30, take=True) == {"ok": True}
    [connection] = FakeConnection.made
    assert published(connection) == [sent.message_id]
