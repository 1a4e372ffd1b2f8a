"""Fault: storms of bad input, as the API is deployed (2 gunicorn workers x 16 threads,
Prometheus multiprocess mode), from 32 keep-alive clients.

Seven rounds of 200 requests of every kind the API refuses (tests/support/storm.py:
malformed JSON, wrong types, 10 MB bodies with and without Content-Length, bad tokens on
a 5 MB upload, unknown routes and task ids, ...) must leave the API's resident memory
(master + workers) within 10 % of what it was before. Without the allocator settings of
deploy/gunicorn.conf.py (``post_fork``) it grew by 17-18 % here, and kept growing: the
buffers of the bodies stayed in the 16 threads' malloc arenas (docs/operations.md,
"Memory"). ``benchmarks/_storm.py`` prints the figures round by round.
"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api.stack import Api
from tests.support.processes import recsys_env
from tests.support.storm import memory, storm_round

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROUNDS, PER_ROUND, CLIENTS = 7, 200, 32


def test_a_storm_of_1400_bad_requests_leaves_the_api_within_10_percent_of_its_memory(
    rabbitmq_url, redis_url, tmp_path
):
    env = recsys_env(
        RECSYS_BROKER_URL=rabbitmq_url, RECSYS_RESULTS_URL=redis_url, RECSYS_API_TOKEN="t",
        RECSYS_DATA_DIR=str(tmp_path / "api-data"), RECSYS_REQUEST_QUEUE="faults-memory.requests",
        RECSYS_BUILD_QUEUE="faults-memory.builds", RECSYS_BROADCAST_EXCHANGE="faults-memory.broadcast",
    )
    api = Api(tmp_path, env, workers=2, threads=16).start()
    try:
        # Given the API as deployed, each worker past its first requests
        with httpx.Client(base_url=api.url, timeout=10) as client:
            for _ in range(40):
                assert client.get("/health").status_code == 200
                assert client.get("/metrics").status_code == 200
        before = memory(api.pid)
        assert len(before["workers_mb"]) == 2, before

        # When 1,400 bad requests come in rounds from 32 keep-alive clients
        rounds, wrong = [], {}
        for _ in range(ROUNDS):
            counts = storm_round(api.url, PER_ROUND, CLIENTS)
            wrong.update({key: count for key, count in counts.items() if "->" in key})
            rounds.append(memory(api.pid)["total_mb"])

        # Then each was refused with its status, and the API's memory is within 10 %
        assert wrong == {}
        after = memory(api.pid)
        assert after["workers_mb"].keys() == before["workers_mb"].keys(), "a worker was restarted"
        assert after["total_mb"] <= 1.10 * before["total_mb"], (
            f"RSS before {before}, after each round {rounds}, after {after}"
        )
    finally:
        api.stop()
        api.client.close()
