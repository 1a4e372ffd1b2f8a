"""Redis or RabbitMQ down: 503 with a clear message, and recovery without a restart.

Failures are simulated at each client's boundary (the KV, the broker, the result
backend); the real clients are also pointed at a closed port to check that they fail
with Unavailable rather than hang. The integration tests stop and restart a real Redis.
"""

from __future__ import annotations

import socket

import falcon.testing
import pytest
import redis
from dramatiq.results import Results

from recsys.errors import Unavailable
from recsys.kv import MemoryKV
from recsys_api import services
from recsys_api.app import create_app
from recsys_api.broadcast import PikaBroadcaster
from recsys_api.memory_results import MemoryResultBackend
from recsys_api.redis_results import redis_backend

from .conftest import AUTH
from .test_engine import FlakyBroker

BODY = {"text": "graph neural networks", "k": 2}


class FlakyKV(MemoryKV):
    """MemoryKV that fails like RedisKV while ``down``."""

    down = False

    def _check(self):
        if self.down:
            raise Unavailable("Redis at 127.0.0.1:6379/0 is unreachable: Connection refused")

    def get(self, key):
        self._check()
        return super().get(key)

    def set(self, key, value, *, ttl=None, nx=False):
        self._check()
        return super().set(key, value, ttl=ttl, nx=nx)

    def delete(self, key):
        self._check()
        super().delete(key)

    def scan(self, prefix):
        self._check()
        return super().scan(prefix)

    def ping(self):
        self._check()


class FlakyBackend(MemoryResultBackend):
    down = False

    def get_result(self, message, *, block=False, timeout=None):
        if self.down:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return super().get_result(message, block=block, timeout=timeout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rabbitmq_down_is_503_naming_it_and_the_api_recovers(make_harness):
    broker = FlakyBroker()
    h = make_harness(broker=broker)
    broker.down = True

    down = h.client.simulate_post("/v1/recommendations", json=BODY)

    assert down.status_code == 503
    assert down.json["title"] == "Service unavailable"
    assert "RabbitMQ" in down.json["description"] and "unreachable" in down.json["description"]
    assert down.headers["retry-after"]
    broker.down = False
    assert h.client.simulate_post("/v1/recommendations", json=BODY).status_code == 200


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("POST", "/v1/recommendations", {"json": BODY, "headers": {"Prefer": "respond-async"}}),
    ("GET", "/v1/tasks/abc", {}),
    ("GET", "/v1/workers", {}),
    ("POST", "/v1/engine/builds", {"headers": AUTH}),
])
def test_redis_down_is_503_naming_it_and_the_api_recovers(make_harness, method, path, kwargs):
    kv = FlakyKV()
    h = make_harness(kv=kv)
    kv.down = True

    down = h.client.simulate_request(method, path, **kwargs)

    assert down.status_code == 503
    assert "Redis" in down.json["description"] and "unreachable" in down.json["description"]
    kv.down = False
    assert h.client.simulate_request(method, path, **kwargs).status_code < 500


def test_results_unreachable_while_waiting_is_503_and_recovers(make_harness):
    h = make_harness(create=False)
    backend = FlakyBackend()

    h.broker.middleware[:] = [m for m in h.broker.middleware if not isinstance(m, Results)]
    h.broker.add_middleware(Results(backend=backend))
    app = create_app(h.settings, broker=h.broker, result_backend=backend, kv=h.kv, archive_store=h.store,
                     broadcaster=h.broadcaster, registry_records=[])
    client = falcon.testing.TestClient(app)
    backend.down = True
    down = client.simulate_post("/v1/recommendations", json=BODY)
    backend.down = False
    up = client.simulate_post("/v1/recommendations", json=BODY)

    assert down.status_code == 503
    assert "result cannot be read" in down.json["description"]
    assert up.status_code == 200


def test_the_health_endpoint_needs_no_dependency(make_harness):
    kv, broker = FlakyKV(), FlakyBroker()
    h = make_harness(kv=kv, broker=broker)
    kv.down = broker.down = True

    assert h.client.simulate_get("/health").json == {"status": "ok"}


def test_real_clients_on_a_closed_port_fail_with_unavailable(make_harness):
    # Given the deployment's RabbitMQ and Redis clients pointed at ports nobody listens on
    amqp = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    h = make_harness(create=False, worker=False, broker_url=amqp, results_url=redis_url)
    kv = services.redis_kv(redis_url)
    app = create_app(h.settings, broker=services.rabbitmq_broker(amqp),
                     result_backend=redis_backend(redis_url, longest_wait=1), kv=kv, archive_store=h.store,
                     broadcaster=h.broadcaster, registry_records=[], broker_check=services.rabbitmq_check(amqp),
                     )
    client = falcon.testing.TestClient(app)

    # Then requests get 503 naming the service they need: Redis first, since a task whose
    # result cannot be read is not sent (RabbitMQ alone down: the next test)
    response = client.simulate_post("/v1/recommendations", json=BODY)
    assert response.status_code == 503
    assert "Redis at 127.0.0.1:" in response.json["description"]
    assert "task 'recommend' was not sent" in response.json["description"]
    response = client.simulate_get("/v1/tasks/abc")
    assert response.status_code == 503
    assert f"Redis at {redis_url} is unreachable" in response.json["description"]
    # and /ready names both
    ready = client.simulate_get("/ready")
    assert ready.status_code == 503
    assert ready.json["checks"]["broker"]["ok"] is False
    assert "RabbitMQ is unreachable" in ready.json["checks"]["broker"]["error"]
    assert ready.json["checks"]["results"]["ok"] is False


def test_a_real_broker_on_a_closed_port_is_503_naming_rabbitmq(make_harness):
    amqp = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    h = make_harness(create=False, worker=False, broker_url=amqp)
    app = create_app(h.settings, broker=services.rabbitmq_broker(amqp), result_backend=h.backend, kv=h.kv,
                     archive_store=h.store, broadcaster=h.broadcaster, registry_records=[])
    response = falcon.testing.TestClient(app).simulate_post("/v1/recommendations", json=BODY)

    assert response.status_code == 503
    assert "RabbitMQ at 127.0.0.1:" in response.json["description"]


def test_a_broadcast_to_an_unreachable_rabbitmq_is_logged_not_raised(harness, caplog):
    installed = harness.install()

    assert PikaBroadcaster(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", "x").publish(installed) is False
    assert "RabbitMQ is unreachable" in caplog.text
