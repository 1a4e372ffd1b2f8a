"""The API's Redis result backend pops the results of answered requests.

This leans on how Dramatiq's RedisBackend stores a result (a one-element list under
``build_message_key``): if an upgrade changes that, these tests fail loudly.
"""

from __future__ import annotations

import dramatiq
import pytest
import redis
from dramatiq.results import ResultFailure, ResultTimeout

from recsys_api.redis_results import redis_backend

pytestmark = pytest.mark.integration


def message(n: int) -> dramatiq.Message:
    return dramatiq.Message(queue_name="q", actor_name="recommend", args=(), kwargs={}, options={}, message_id=f"m{n}")


@pytest.fixture
def backend(redis_url):
    backend = redis_backend(redis_url, longest_wait=2)
    yield backend
    backend.client.flushdb()
    backend.client.close()


def test_take_result_returns_what_the_worker_stored_and_removes_it(backend, redis_url):
    # Given a result stored the way the workers' Results middleware stores it
    backend.store_result(message(1), {"recommendations": [1, 2]}, ttl=60_000)
    key = backend.build_message_key(message(1))
    assert redis.Redis.from_url(redis_url).exists(key) == 1

    # When the API takes it, then it has the result and Redis holds nothing more
    assert backend.take_result(message(1), timeout=1000) == {"recommendations": [1, 2]}
    assert redis.Redis.from_url(redis_url).exists(key) == 0


def test_get_result_keeps_the_result_for_later_polls(backend):
    backend.store_result(message(2), "kept", ttl=60_000)
    assert backend.get_result(message(2), block=True, timeout=1000) == "kept"
    assert backend.get_result(message(2)) == "kept"


def test_take_result_times_out_and_reports_failures(backend):
    with pytest.raises(ResultTimeout):
        backend.take_result(message(3), timeout=1000)
    backend.store_exception(message(4), ValueError("boom"), ttl=60_000)
    with pytest.raises(ResultFailure):
        backend.take_result(message(4), timeout=1000)
