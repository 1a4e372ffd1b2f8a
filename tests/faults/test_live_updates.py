"""Faults of live updates: every worker pool is killed (``kill -9``) in the middle of an
apply, and restarted; the API cannot reach RabbitMQ when it has recorded a change (the
commit is done, the apply is not sent).

The change was durable before its 202; the dead apply's build lock expires
(RECSYS_BUILD_LOCK_TTL), the API's resender sends the apply again
(RECSYS_CHANGES_RESEND_INTERVAL) and the restarted pools apply it: no change is lost,
and every process serves it. (A kill -9 of the API right after a 202 is in
tests/e2e/test_live_updates.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.backend import PublicationsBackend, demo_corpus
from tests.e2e.stack import TOKEN, Stack, flush_redis
from tests.support.processes import wait_until
from tests.support.proxy import TcpProxy, via_proxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECORD = {"id": "fault-live-1", "title": "Octopus arms decide on their own where to reach",
          "abstract": "Each octopus arm runs its own neural circuit that decides where the arm reaches."}


@pytest.fixture
def corpus() -> Iterator[PublicationsBackend]:
    server = PublicationsBackend(demo_corpus(), page_size=10)
    with server.serve():
        yield server


def test_a_worker_killed_mid_apply_loses_no_change(tmp_path: Path, rabbitmq_url: str, redis_url: str,
                                                   corpus: PublicationsBackend) -> None:
    flush_redis(redis_url)
    stack = Stack(tmp_path, broker_url=rabbitmq_url, results_url=redis_url, source=corpus.url, engine="lexical",
                  worker_args=("--processes", "1"), settings={"RECSYS_CHANGES_RESEND_INTERVAL": "2"})
    try:
        stack.start(scheduler=False)
        first = wait_until(stack.engine, timeout=180, what="the first engine")
        stack.wait_converged(first["generation"])
        # Given a slow source, so that an apply runs for a few seconds
        corpus.delay = 0.5
        served = corpus.pages_served
        response = stack.http.post("/v1/publications", json={"upsert": [RECORD]},
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 202, response.text
        change_id = response.json()["change_id"]
        # When every pool is killed while the apply reads the source
        wait_until(lambda: corpus.pages_served > served, timeout=30, what="the apply to read the source")
        for pool in stack.pools.values():
            pool.kill9()
        status = stack.http.get(f"/v1/publications/changes/{change_id}").json()["status"]
        assert status == "pending"
        corpus.delay = 0.0
        for pool in stack.pools.values():
            pool.restart()

        # Then the change is applied once the dead apply's lock expired, and served everywhere
        def applied() -> dict | None:
            body = stack.http.get(f"/v1/publications/changes/{change_id}").json()
            return body if body["status"] == "applied" else None

        change = wait_until(applied, timeout=120, what=f"change {change_id} to be applied", interval=0.5)
        stack.wait_converged(change["generation"])
        for _ in range(4):
            found = stack.recommendations(text=RECORD["title"], k=3, strict=True)
            assert found["recommendations"][0]["publication_id"] == RECORD["id"], found
    finally:
        stack.close()
        flush_redis(redis_url)


def test_a_change_recorded_while_the_broker_is_unreachable_is_applied_when_it_is_back(
        tmp_path: Path, rabbitmq_url: str, redis_url: str, corpus: PublicationsBackend) -> None:
    flush_redis(redis_url)
    parts = urlsplit(rabbitmq_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5672), name="api-rabbitmq").start()
    stack = Stack(tmp_path, broker_url=rabbitmq_url, results_url=redis_url, source=corpus.url, engine="lexical",
                  pools=("a",), worker_args=("--processes", "1"),
                  settings={"RECSYS_CHANGES_RESEND_INTERVAL": "2"})
    stack.api.env["RECSYS_BROKER_URL"] = via_proxy(rabbitmq_url, proxy)  # only the API goes through the proxy
    try:
        stack.start(scheduler=False)
        first = wait_until(stack.engine, timeout=180, what="the first engine")
        stack.wait_converged(first["generation"])
        # Given the API cut off from RabbitMQ
        proxy.stop()
        # When a push is recorded: durable, answered 202, its apply not sent
        response = stack.http.post("/v1/publications", json={"upsert": [RECORD]},
                                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert response.status_code == 202, response.text
        change_id = response.json()["change_id"]
        assert stack.http.get(f"/v1/publications/changes/{change_id}").json()["status"] == "pending"
        wait_until(lambda: "could not send apply_changes" in stack.api.text(), timeout=10,
                   what="the API to log that it could not send the apply")
        # Then once RabbitMQ is reachable again, the resender sends it and it is applied
        proxy.start()

        def applied() -> dict | None:
            body = stack.http.get(f"/v1/publications/changes/{change_id}").json()
            return body if body["status"] == "applied" else None

        change = wait_until(applied, timeout=120, what=f"change {change_id} to be applied", interval=0.5)
        stack.wait_converged(change["generation"])
        found = stack.recommendations(text=RECORD["title"], k=3, strict=True)
        assert found["recommendations"][0]["publication_id"] == RECORD["id"], found
    finally:
        stack.close()
        proxy.stop()
        flush_redis(redis_url)
