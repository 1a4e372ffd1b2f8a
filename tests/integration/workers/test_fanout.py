"""The broadcast queue against a real RabbitMQ: one exclusive queue per consumer,
bound to the fanout exchange, gone with its connection; nothing durable left behind."""

from __future__ import annotations

import threading

import dramatiq
import pytest

from recsys_workers.fanout import FanoutRabbitmqBroker
from tests.integration.workers.cluster import EXCHANGE, list_queues, publish_broadcast
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration


def next_message(consumer, timeout=10.0):
    return wait_until(lambda: next(consumer), timeout=timeout, what="a broadcast", interval=0)


def test_each_consumer_gets_every_broadcast_on_its_own_exclusive_queue(rabbitmq_url):
    # Given two "processes": two brokers, each consuming the broadcast queue
    bound = []
    brokers = [FanoutRabbitmqBroker(url=rabbitmq_url, broadcast_queue=EXCHANGE) for _ in range(2)]
    for broker in brokers:
        broker.bind_listeners.append(lambda: bound.append(threading.get_ident()))
    consumers = [broker.consume(EXCHANGE, prefetch=4, timeout=200) for broker in brokers]
    try:
        assert len(bound) == 2, "every bind calls the listeners (the worker catches up there)"
        queues = {q["name"]: q for q in list_queues(rabbitmq_url) if q["name"].startswith(EXCHANGE)}
        assert set(queues) == {c.queue for c in consumers}
        assert all(q["exclusive"] and q["auto_delete"] and not q["durable"] for q in queues.values())

        # When a broadcast is published as the API does, and another through the broker
        publish_broadcast(rabbitmq_url, generation=3, version="v3", created_at="t", sha256="0" * 64)
        actor = dramatiq.actor(lambda **kw: None, broker=brokers[0], actor_name="engine_updated",
                               queue_name=EXCHANGE)
        actor.send(generation=4, version="v4", created_at="t", sha256="1" * 64)

        # Then each consumer gets both, in order, as messages of the broadcast queue
        for consumer in consumers:
            first, second = next_message(consumer), next_message(consumer)
            assert (first.kwargs["generation"], second.kwargs["generation"]) == (3, 4)
            assert first.queue_name == EXCHANGE and first.actor_name == "engine_updated"
            consumer.ack(first)
            consumer.ack(second)
    finally:
        for consumer in consumers:
            consumer.close()
        for broker in brokers:
            broker.close()

    # And closing the connections deletes the queues; nothing durable was ever made
    def leftovers():
        return [q["name"] for q in list_queues(rabbitmq_url) if q["name"].startswith(EXCHANGE)]

    wait_until(lambda: leftovers() == [], what="the broadcast queues to disappear")


def test_a_broadcast_with_no_worker_listening_is_dropped(rabbitmq_url):
    broker = FanoutRabbitmqBroker(url=rabbitmq_url, broadcast_queue=EXCHANGE)
    actor = dramatiq.actor(lambda **kw: None, broker=broker, actor_name="engine_updated", queue_name=EXCHANGE)
    try:
        actor.send(generation=1, version="v1", created_at="t", sha256="2" * 64)
        # A consumer bound afterwards does not see it: broadcasts do not pile up
        consumer = broker.consume(EXCHANGE, prefetch=1, timeout=200)
        try:
            assert next(consumer) is None
        finally:
            consumer.close()
    finally:
        broker.close()
