"""What a worker does when a RabbitMQ connection closes (recsys_workers.reconnect), on a
fake pika connection: acks reach only the channel that delivered the message, never raise,
and the consumers reconnect after a short delay that grows while RabbitMQ stays away."""

from __future__ import annotations

import logging
from queue import PriorityQueue

import dramatiq
import dramatiq.worker
import pika
import pika.exceptions
import pytest
from dramatiq.errors import ConnectionClosed

from recsys_workers import reconnect
from recsys_workers.fanout import BroadcastConsumer, FanoutRabbitmqBroker
from recsys_workers.reconnect import Backoff, ConnectionBoundConsumer, set_restart_delay
from tests.support.fake_pika import FakeConnection

UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/%2F"
QUEUE = "faults.requests"


@pytest.fixture
def broker(monkeypatch):
    FakeConnection.made.clear()
    monkeypatch.setattr(pika, "BlockingConnection", FakeConnection)
    broker = FanoutRabbitmqBroker(url=UNREACHABLE, broadcast_queue="faults.broadcast")
    dramatiq.actor(lambda request: None, broker=broker, actor_name="recommend", queue_name=QUEUE)
    return broker


def new_message() -> dramatiq.Message:
    return dramatiq.Message(queue_name=QUEUE, actor_name="recommend", args=(), kwargs={}, options={})


def receive(consumer, message=None):
    consumer.channel.deliver(message or new_message())
    delivered = next(consumer)
    assert delivered is not None
    return delivered


def test_the_broker_consumes_its_queues_with_the_connection_bound_consumer(broker):
    consumer = broker.consume(QUEUE, prefetch=2, timeout=100)
    assert isinstance(consumer, ConnectionBoundConsumer)


def test_an_ack_reaches_the_channel_that_delivered_the_message(broker):
    consumer = broker.consume(QUEUE, prefetch=2, timeout=100)
    first, second = receive(consumer), receive(consumer)
    consumer.ack(second)
    consumer.nack(first)
    consumer.connection.run_callbacks()
    assert consumer.channel.acked == [2] and consumer.channel.nacked == [1]


def test_after_a_reconnect_an_old_delivery_is_not_acked_in_place_of_a_new_one(broker, caplog):
    # Given a message delivered (tag 1) on a connection that then closed, and a new
    # consumer whose first delivery has the same tag
    old = broker.consume(QUEUE, prefetch=2, timeout=100)
    stale = receive(old)
    old.connection.drop()
    new = broker.consume(QUEUE, prefetch=2, timeout=100)
    fresh = receive(new)
    assert stale._tag == fresh._tag == 1

    # When Dramatiq acks the old message on the consumer thread's current consumer
    with caplog.at_level(logging.INFO):
        new.ack(stale)
        new.connection.run_callbacks()

        # Then nothing reaches the new channel, and the new delivery is acked when it is done
        assert new.channel.acked == []
        new.ack(fresh)
        new.connection.run_callbacks()
    assert new.channel.acked == [1]
    assert old.lost.count == 1 and new.lost.count == 0
    assert "not in known tags" not in caplog.text


def test_acks_a_closed_connection_cannot_carry_are_dropped_and_logged_once(broker, caplog):
    consumer = broker.consume(QUEUE, prefetch=2, timeout=100)
    first, second = receive(consumer), receive(consumer)
    consumer.connection.drop()
    with caplog.at_level(logging.INFO, logger="recsys_workers.reconnect"):
        consumer.ack(first)  # must not raise ConnectionClosed
        consumer.nack(second)
    assert consumer.lost.count == 2
    [line] = [r for r in caplog.records if r.name == "recsys_workers.reconnect"]
    assert QUEUE in line.getMessage() and first.message_id in line.getMessage()
    assert "RabbitMQ redelivers them" in line.getMessage()


def test_an_ack_racing_with_the_close_is_dropped_too(broker, monkeypatch):
    consumer = broker.consume(QUEUE, prefetch=2, timeout=100)
    message = receive(consumer)

    def closing(callback):
        raise pika.exceptions.ConnectionWrongStateError("closing")

    monkeypatch.setattr(consumer.connection, "add_callback_threadsafe", closing)
    consumer.ack(message)
    assert consumer.lost.count == 1


def test_the_worker_does_not_sleep_on_an_ack_of_a_closed_connection(broker, monkeypatch):
    """Dramatiq's worker thread sleeps 5 s and retries when an ack raises ConnectionClosed
    (POST_PROCESS_MESSAGE_RETRY_DELAY_SECS): that was the stall after a reconnect."""
    consumer = broker.consume(QUEUE, prefetch=2, timeout=100)
    message = receive(consumer)
    consumer.connection.drop()
    thread = dramatiq.worker._ConsumerThread(
        broker=broker, queue_name=QUEUE, prefetch=2, work_queue=PriorityQueue(), worker_timeout=100,
    )
    thread.consumer = consumer

    def no_sleep(seconds):
        raise AssertionError(f"the worker thread slept {seconds} s to retry an ack")

    monkeypatch.setattr(dramatiq.worker.time, "sleep", no_sleep)
    thread.post_process_message(message)
    assert consumer.lost.count == 1


def test_the_broadcast_consumer_follows_the_same_rule(broker):
    old = BroadcastConsumer(broker.broadcast_parameters, exchange="faults.broadcast", prefetch=1, timeout=100)
    message = new_message().copy(queue_name="faults.broadcast")
    old.channel.deliver(message)
    stale = next(old)
    old.connection.drop()
    old.ack(stale)  # no raise
    new = BroadcastConsumer(broker.broadcast_parameters, exchange="faults.broadcast", prefetch=1, timeout=100)
    new.channel.deliver(message)
    fresh = next(new)
    new.ack(stale)
    new.connection.run_callbacks()
    assert new.channel.acked == []
    new.ack(fresh)
    new.connection.run_callbacks()
    assert new.channel.acked == [1]
    assert old.lost.count == 2 and new.lost.count == 0


# -- the restart delay and the backoff ---------------------------------------------------


@pytest.fixture
def dramatiq_delay(monkeypatch):
    """Restore Dramatiq's constants after the test."""
    monkeypatch.setattr(dramatiq.worker, "CONSUMER_RESTART_DELAY", dramatiq.worker.CONSUMER_RESTART_DELAY)
    monkeypatch.setattr(dramatiq.worker, "CONSUMER_RESTART_DELAY_SECS", dramatiq.worker.CONSUMER_RESTART_DELAY_SECS)
    monkeypatch.delenv(reconnect.RESTART_DELAY_ENV, raising=False)
    return monkeypatch


def test_the_restart_delay_is_set_in_dramatiqs_worker_module(dramatiq_delay):
    dramatiq.worker.CONSUMER_RESTART_DELAY, dramatiq.worker.CONSUMER_RESTART_DELAY_SECS = 3000, 3.0
    assert set_restart_delay() == 0.2
    assert dramatiq.worker.CONSUMER_RESTART_DELAY == 200
    assert dramatiq.worker.CONSUMER_RESTART_DELAY_SECS == 0.2


def test_an_operators_dramatiq_restart_delay_wins(dramatiq_delay):
    dramatiq_delay.setenv(reconnect.RESTART_DELAY_ENV, "1000")
    dramatiq.worker.CONSUMER_RESTART_DELAY, dramatiq.worker.CONSUMER_RESTART_DELAY_SECS = 1000, 1.0
    assert set_restart_delay() == 1.0
    assert dramatiq.worker.CONSUMER_RESTART_DELAY_SECS == 1.0


def test_the_rabbitmq_broker_sets_the_restart_delay(dramatiq_delay):
    from recsys.config import Settings
    from recsys_workers.broker import create_broker

    dramatiq.worker.CONSUMER_RESTART_DELAY_SECS = 3.0
    create_broker(Settings(broker_url=UNREACHABLE, results_url="redis://127.0.0.1:1/0"))
    assert dramatiq.worker.CONSUMER_RESTART_DELAY_SECS == reconnect.RESTART_DELAY_MS / 1000


def test_the_backoff_doubles_while_attempts_fail_and_resets_after_one_works(dramatiq_delay):
    dramatiq.worker.CONSUMER_RESTART_DELAY_SECS = 0.2
    backoff = Backoff(longest=1.0)
    waits = [backoff.wait("q")]
    for _ in range(5):
        backoff.failed("q")
        waits.append(round(backoff.wait("q"), 3))
    # total delays 0.2 (Dramatiq's own), 0.4, 0.8, then capped at 1.0
    assert waits == [0.0, 0.2, 0.6, 0.8, 0.8, 0.8]
    assert backoff.wait("other") == 0.0
    backoff.succeeded("q")
    assert backoff.wait("q") == 0.0


def test_a_consumer_that_cannot_connect_waits_longer_before_each_new_attempt(broker, monkeypatch):
    slept = []
    monkeypatch.setattr(reconnect.time, "sleep", slept.append)
    monkeypatch.setattr(dramatiq.worker, "CONSUMER_RESTART_DELAY_SECS", 0.2)

    def refused(*args, **kwargs):
        raise pika.exceptions.AMQPConnectionError("Connection refused")

    monkeypatch.setattr(pika, "BlockingConnection", refused)
    for _ in range(3):
        with pytest.raises(ConnectionClosed):
            broker.consume(QUEUE, prefetch=2, timeout=100)
    assert [round(s, 3) for s in slept] == [0.2, 0.6]
    monkeypatch.setattr(pika, "BlockingConnection", FakeConnection)
    broker.consume(QUEUE, prefetch=2, timeout=100)
    broker.consume(QUEUE, prefetch=2, timeout=100)  # after a success: no wait
    assert [round(s, 3) for s in slept] == [0.2, 0.6, 1.4]
