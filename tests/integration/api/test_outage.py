"""Redis stops and comes back under a running API: 503 quickly while it is down, and
the API recovers by itself (no restart, no cached dead connection)."""

from __future__ import annotations

import time

import pytest

from recsys.build import build_archive
from recsys.config import Settings
from recsys.registry import Registry
from recsys.testing import sample_publications
from tests.integration.api.stack import Api, RedisServer
from tests.support.processes import recsys_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BODY = {"text": "Graph neural networks for molecules.", "k": 2}


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def api(rabbitmq_url, redis_server, tmp_path):
    # An engine from the start: without one the API sends the first build, and a
    # recommendation then answers 503 "a build is running" instead of being accepted.
    start = build_archive(sample_publications(), tmp_path / "start.zip", engine="lexical",
                          registry=Registry.discover(), settings=Settings()).path
    env = recsys_env(
        RECSYS_START_ENGINE=str(start),
        RECSYS_BROKER_URL=rabbitmq_url,
        RECSYS_RESULTS_URL=redis_server.url,
        RECSYS_API_TOKEN="t",
        RECSYS_DATA_DIR=str(tmp_path / "api-data"),
        RECSYS_REQUEST_QUEUE="api-outage.requests",
        RECSYS_BUILD_QUEUE="api-outage.builds",
        RECSYS_BROADCAST_EXCHANGE="api-outage.broadcast",
    )
    server = Api(tmp_path, env, workers=1, threads=4).start()
    yield server
    server.stop()
    server.client.close()


def ask(api):
    return api.client.post("/v1/recommendations", json=BODY, headers={"Prefer": "respond-async"})


def test_redis_down_gives_503_and_the_api_recovers_when_it_returns(api, redis_server):
    # Given a working API (the task is recorded in Redis and sent to RabbitMQ)
    accepted = ask(api)
    assert accepted.status_code == 202
    task = accepted.headers["location"]
    assert api.client.get(task).json()["status"] == "pending"

    # When Redis stops, requests that need it get 503 naming Redis, not a hang
    redis_server.stop()
    started = time.monotonic()
    down = [ask(api), api.client.get(task), api.client.get("/v1/workers")]
    elapsed = time.monotonic() - started
    for response in down:
        assert response.status_code == 503, response.text
        assert "Redis" in response.json()["description"]
    ready = api.client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["results"]["ok"] is False
    assert ready.json()["checks"]["broker"]["ok"] is True
    assert api.client.get("/health").status_code == 200
    print(f"3 requests answered 503 in {elapsed:.2f} s while Redis was down")

    # When Redis returns (empty: no persistence), the same API process serves again
    redis_server.start()
    again = ask(api)
    assert again.status_code == 202, again.text
    assert api.client.get(again.headers["location"]).json()["status"] == "pending"
    assert api.client.get(task).status_code == 404  # its record was lost with Redis's memory
