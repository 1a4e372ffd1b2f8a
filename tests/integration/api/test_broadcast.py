"""PikaBroadcaster against the real RabbitMQ: the message format, and a missing exchange."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import dramatiq
import pika
import pytest

from recsys import protocol
from recsys.archive import FileEntry, Manifest
from recsys_api.archive_store import StoredArchive
from recsys_api.broadcast import PikaBroadcaster

pytestmark = pytest.mark.integration


def stored(generation: int) -> StoredArchive:
    created = datetime(2026, 11, 28, 21, 18, tzinfo=UTC)
    manifest = Manifest(
        engine="lexical", version=created.strftime("%Y%m%dT%H%M%S%fZ"),
        created_at=created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), publications=1, sentences=1,
        files=(FileEntry("a.json", 1, "0" * 64),),
    )
    return StoredArchive(generation, f"{manifest.version}.zip", manifest, "f" * 64, 123, "2026-11-28T21:19:00.000000Z")


def test_without_the_exchange_nothing_is_published_and_nothing_fails(rabbitmq_url):
    assert PikaBroadcaster(rabbitmq_url, f"absent-{uuid.uuid4().hex}").publish(stored(1)) is False


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
                                      "created_at": "2026-11-28T21:18:00.000000Z", "sha256": "f" * 64}
        channel.exchange_delete(exchange=exchange)
    finally:
        connection.close()

