"""A real pool's metrics endpoint: `dramatiq recsys_workers --processes 2` with
RECSYS_WORKER_METRICS_PORT set serves one /metrics that adds up both processes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from recsys.testing import sample_publications
from tests.integration.workers.conftest import Cluster
from tests.support.fake_api import FakeApi
from tests.support.processes import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUERY = {"text": "Dark matter halos around dwarf galaxies and star formation in spiral arms.", "k": 3}


@pytest.fixture(scope="module")
def metered(tmp_path_factory, rabbitmq_url, redis_url) -> Iterator[tuple[Cluster, str]]:
    folder = tmp_path_factory.mktemp("metered")
    api = FakeApi()
    api.publications = [p.to_dict() for p in sample_publications()]
    with api.serve() as api_url:
        cluster = Cluster(folder, api, api_url, rabbitmq_url, redis_url)
        api.on_upload = cluster.broadcast
        port = free_port()
        pool = cluster.pools.pop("a")
        cluster.pools = {"a": pool}
        pool.env.update(RECSYS_WORKER_METRICS_PORT=str(port), RECSYS_WORKER_METRICS_HOST="127.0.0.1")
        try:
            api.publish(cluster.archive())
            pool.start()
            cluster.wait_serving(api.current.generation)
            yield cluster, f"http://127.0.0.1:{port}/metrics"
        finally:
            cluster.close()


def scrape(url: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_the_pool_serves_the_sum_of_its_processes(metered) -> None:
    cluster, url = metered
    messages = [cluster.send("recommend", "recsys.requests", QUERY) for _ in range(8)]
    for message in messages:
        assert "recommendations" in cluster.result(message)
    generation = cluster.api.current.generation
    pids = {str(pid) for pid in cluster.pools["a"].pids()}

    def settled() -> dict | None:
        found = scrape(url)
        done = found.get(("recsys_worker_tasks_total", (("actor", "recommend"), ("outcome", "succeeded"))))
        return found if done == 8 else None

    found = wait_until(settled, timeout=30, what="the pool's endpoint to count the 8 tasks")
    assert found[("recsys_worker_processes", ())] == 2
    served = {dict(labels)["pid"]: value for (name, labels), value in found.items()
              if name == "recsys_worker_engine_generation"}
    assert len(served) == 2 and set(served) <= pids and set(served.values()) == {float(generation)}
    loads = found[("recsys_worker_engine_load_seconds_count", (("engine", "lexical"),))]
    assert loads >= 2, "each process loaded the engine once"
    assert found[("recsys_worker_task_duration_seconds_count",
                  (("actor", "recommend"), ("outcome", "succeeded")))] == 8
