"""The distributed stack end to end, with the lexical engine.

Real processes on loopback, started with the commands of deploy/compose.yml: the API
under gunicorn, two worker pools (two "machines", a data dir each), the scheduler
(periodiq, a build every minute), and a publications backend played by the test.
Every process reaches RabbitMQ and Redis through a TCP proxy the test owns, so the
test can cut the stack off from either and give it back without touching the shared
servers.

The tests share one stack and run in order, each starting from the state the one
before left (and waiting for it when needed). Builds by the scheduler may land at any
moment: every wait accepts the generation it waits for or a newer one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.backend import PublicationsBackend
from tests.e2e.stack import Stack, flush_redis
from tests.support.processes import wait_until
from tests.support.proxy import TcpProxy, via_proxy

pytestmark = pytest.mark.e2e

#: Publications added to the backend's corpus before the rebuild: a topic, and words,
#: that the demo corpus does not have.
NEW_PUBLICATIONS = [
    {"id": "e2e-new-1", "title": "Tardigrade cryptobiosis inside lunar regolith simulant",
     "abstract": "Tardigrades survived cryptobiosis for nine months inside lunar regolith simulant. "
                 "Rehydrated tardigrades resumed feeding within hours.",
     "label": "astrobiology", "year": 2026},
    {"id": "e2e-new-2", "title": "Trehalose glass protects tardigrade proteins during desiccation",
     "abstract": "Tardigrade cryptobiosis depends on trehalose glass and disordered proteins. "
                 "Knocking down the disordered proteins made tardigrades die in desiccation.",
     "label": "astrobiology", "year": 2025},
]
NEW_QUERY = "How do tardigrades survive cryptobiosis and desiccation?"


def demo_query(backend: PublicationsBackend) -> tuple[str, str]:
    """A demo publication's id and its title, as a query that should find it."""
    publication = backend.publications[0]
    return publication["id"], publication["title"]


def ids(result: dict[str, Any]) -> list[str]:
    return [item["publication_id"] for item in result["recommendations"]]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    rabbitmq_url: str,
    redis_url: str,
    rabbitmq_proxy: TcpProxy,
    redis_proxy: TcpProxy,
    backend: PublicationsBackend,
) -> Iterator[Stack]:
    flush_redis(redis_url)
    folder: Path = tmp_path_factory.mktemp("stack")
    stack = Stack(
        folder,
        broker_url=via_proxy(rabbitmq_url, rabbitmq_proxy),
        results_url=via_proxy(redis_url, redis_proxy),
        source=backend.url,
        engine="lexical",
        cron="* * * * *",
    )
    try:
        yield stack.start()
    finally:
        stack.close()
        flush_redis(redis_url)


def test_first_engine_is_built_at_start_and_serves_recommendations(stack: Stack, backend: PublicationsBackend) -> None:
    # Given a stack started on an empty data dir: the API's start step sent build_index.
    engine = wait_until(stack.engine, timeout=180, what="the first engine (GET /v1/engine)")
    assert engine["engine"] == "lexical"
    # Then both pools (2 processes each) serve it.
    workers = stack.wait_converged(engine["generation"], pools=["a", "b"])
    assert len(workers["workers"]) == 4

    # Recommendations for a text, and for a stored publication.
    pub_id, title = demo_query(backend)
    by_text = stack.recommendations(text=title, k=5)
    assert by_text["engine"]["name"] == "lexical"
    assert pub_id in ids(by_text)
    assert by_text["recommendations"][0]["evidence"], "each recommendation has sentence evidence"
    by_id = stack.recommendations(publication_id=pub_id, k=5)
    assert by_id["recommendations"] and pub_id not in ids(by_id)


def test_rebuild_with_new_publications_while_a_pool_is_killed(stack: Stack, backend: PublicationsBackend) -> None:
    before = stack.wait_converged(1, pools=["a", "b"])["generation"]
    # Given new publications in the backend, and a build started through the API.
    backend.add(NEW_PUBLICATIONS)
    task_id = stack.trigger_build()
    # When the new engine is uploaded (and broadcast), pool b dies: kill -9 mid-rollout.
    wait_until(lambda: stack.engine()["generation"] > before, timeout=180, what="the rebuilt engine's upload")
    stack.pools["b"].kill9()

    task = stack.wait_task(task_id)
    assert task["status"] == "succeeded", task
    generation = task["result"]["engine"]["generation"]
    assert task["result"]["publications"] == len(backend.publications)
    # Then pool a serves the new engine, and recommends the new publications.
    stack.wait_converged(generation, pools=["a"])
    result = stack.recommendations(text=NEW_QUERY, k=3)
    assert set(ids(result)[:2]) == {p["id"] for p in NEW_PUBLICATIONS}, result
    assert result["engine"]["generation"] >= generation

    # When pool b restarts on its data dir, it catches up without a new broadcast.
    stack.pools["b"].start()
    stack.wait_converged(generation, pools=["a", "b"])


def test_rabbitmq_cut_off_and_back(stack: Stack, rabbitmq_proxy: TcpProxy) -> None:
    generation = stack.wait_converged(1)["generation"]
    rabbitmq_proxy.stop()
    try:
        # While RabbitMQ is unreachable: a clear 503, not a hang; the API stays alive.
        response = stack.recommend(text=NEW_QUERY)
        assert response.status_code == 503, response.text
        assert "RabbitMQ" in response.json()["description"]
        assert stack.http.get("/health").status_code == 200
        assert stack.http.get("/ready").status_code == 503
    finally:
        rabbitmq_proxy.start()
    # Then everything recovers by itself, engines included.
    wait_until(lambda: stack.recommend(text=NEW_QUERY).status_code == 200, timeout=120,
               what="recommendations to work again after RabbitMQ came back")
    stack.wait_converged(generation)
    assert not stack.crashed()


def test_redis_cut_off_and_back(stack: Stack, redis_proxy: TcpProxy) -> None:
    generation = stack.wait_converged(1)["generation"]
    redis_proxy.stop()
    try:
        response = stack.recommend(text=NEW_QUERY)
        assert response.status_code == 503, response.text
        assert "Redis" in response.json()["description"]
        assert stack.http.get("/v1/workers").status_code == 503
        assert stack.http.get("/health").status_code == 200
    finally:
        redis_proxy.start()
    wait_until(lambda: stack.recommend(text=NEW_QUERY).status_code == 200, timeout=120,
               what="recommendations to work again after Redis came back")
    stack.wait_converged(generation)
    assert not stack.crashed()


def test_rollout_after_the_outages_and_a_scheduled_build(stack: Stack) -> None:
    # A rollout still reaches every process after their connections were cut.
    engine = stack.build()
    stack.wait_converged(engine["generation"], pools=["a", "b"])
    result = stack.recommendations(text=NEW_QUERY, k=3)
    assert result["engine"]["generation"] >= engine["generation"]
    # The scheduler (RECSYS_REBUILD_CRON='* * * * *') starts builds by itself: a newer
    # generation appears that no request of this test asked for.
    wait_until(lambda: stack.engine()["generation"] > engine["generation"], timeout=150,
               what="a build started by the scheduler", interval=1.0)
    assert not stack.crashed()
