"""PikaBroadcaster against the real RabbitMQ: the message format, and an exchange no
worker has declared yet."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import dramatiq
import pika
import pytest

from recsys import protocol
from recsys.archive import FileEntry, Manifest
from recsys_api.archive_store import StoredVersion
from recsys_api.broadcast import PikaBroadcaster

pytestmark = pytest.mark.integration


def stored(generation: int) -> StoredVersion:
    created = datetime(2026, 11, 28, 21, 18, tzinfo=UTC)
    manifest = Manifest(
        engine="lexical", version=created.strftime("%Y%m%dT%H%M%S%fZ"),
        created_at=created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), publications=1, sentences=1,
        files=(FileEntry("a.json", 1, "0" * 64),),
    )
    return StoredVersion(generation, manifest, "e" * 64, 123, "2026-11-28T21:19:00.000000Z")


def test_the_api_declares_the_exchange_when_no_worker_has_yet(rabbitmq_url):
    # Given an exchange nobody declared (the API started before any worker)
    exchange = f"api-it-first-{uuid.uuid4().hex[:8]}"

    # When the API broadcasts, it declares it (nobody is bound: the message is dropped)
    assert PikaBroadcaster(rabbitmq_url, exchange).publish(stored(1)) is True

    # Then it exists, fanout and durable: a worker declaring it so when it binds does not fail
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange=exchange, exchange_type="fanout", durable=True, auto_delete=False)
        channel.exchange_delete(exchange=exchange)
    finally:
        connection.close()


def test_every_bound_queue_gets_an_engine_updated_message(rabbitmq_url):
    exchange = f"api-it-broadcast-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange=exchange, exchange_type="fanout", durable=True, auto_delete=False)
        queues = []
        for _ in range(2):  # two worker processes
            queue = channel.queue_declare(queue="", exclusive=True).method.queue
            channel.queue_bind(queue=queue, exchange=exchange)
            queues.append(queue)

        assert PikaBroadcaster(rabbitmq_url, exchange).publish(stored(7)) is True

        for queue in queues:
            method, _, body = channel.basic_get(queue=queue, auto_ack=True)
            assert method is not None
            message = dramatiq.Message.decode(body)
            assert message.actor_name == protocol.ENGINE_UPDATED_ACTOR
            assert message.queue_name == exchange
            assert message.kwargs == {"generation": 7, "version": "20261128T211800000000Z",
                                      "created_at": "2026-11-28T21:18:00.000000Z", "manifest_sha256": "e" * 64}
        channel.exchange_delete(exchange=exchange)
    finally:
        connection.close()

