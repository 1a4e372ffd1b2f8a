"""Fault: gunicorn's master is killed (kill -9 of the master only, as an OOM kill does)
under 8 keep-alive clients, and a supervisor restarts it a second later.

The orphaned workers must give up the listening socket at once (finishing the requests
in hand), so that the restarted master binds on its first attempt; no client sees a 5xx.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.api.stack import Api
from tests.support.load import KeepAliveLoad
from tests.support.processes import group_pids, recsys_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_restarted_master_binds_at_once_while_the_orphans_finish(rabbitmq_url, redis_url, tmp_path):
    # Given the API under 8 keep-alive clients; RECSYS_REQUEST_TIMEOUT=50 gives a 55 s
    # graceful_timeout, so an orphan that kept the port would be seen for long
    env = recsys_env(
        RECSYS_BROKER_URL=rabbitmq_url, RECSYS_RESULTS_URL=redis_url, RECSYS_API_TOKEN="t",
        RECSYS_DATA_DIR=str(tmp_path / "api-data"), RECSYS_REQUEST_TIMEOUT="50",
        RECSYS_REQUEST_QUEUE="faults-master.requests", RECSYS_BUILD_QUEUE="faults-master.builds",
        RECSYS_BROADCAST_EXCHANGE="faults-master.broadcast",
    )
    api = Api(tmp_path / "first", env, workers=2, threads=4).start()
    restarted: Api | None = None
    load = KeepAliveLoad(api.url, lambda client: client.get("/health"), clients=8).start()
    try:
        load.wait_for(200)
        old_group = api.pid

        # When the master alone is killed, and a supervisor restarts it one second later
        os.kill(api.pid, signal.SIGKILL)
        api.popen.wait(10)
        killed_at = time.monotonic()
        assert group_pids(old_group), "the workers should outlive their master (orphans)"
        time.sleep(1.0)
        restarted = Api(tmp_path / "second", env, workers=2, threads=4, port=api.port)
        restarted.start()  # waits until /health answers, fails if gunicorn exits

        # Then it bound on its first attempt, the orphans are gone, and nobody saw a 5xx
        log = restarted.text()
        assert "Connection in use" not in log, log[-2000:]
        assert restarted.starts == 1 and restarted.running
        wait_until(lambda: not group_pids(old_group), timeout=30, what="the orphaned workers to exit")
        assert "is gone: closed this worker's listening socket" in api.text()
        load.wait_for(200)
        after = load.statuses(since=killed_at)
        assert not [status for status in after if status is not None and status >= 500], load.summary()
        assert after[200] > 0
    finally:
        load.stop()
        for process in (api, restarted):
            if process is not None:
                process.stop()
                process.client.close()
