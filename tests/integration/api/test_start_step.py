"""The start-engine step runs once in gunicorn's master: a bad start archive stops the
API with a one-line error before any worker serves."""

from __future__ import annotations

import pytest

from tests.integration.api.stack import Api
from tests.support.processes import recsys_env, wait_until

pytestmark = [pytest.mark.integration]


def test_a_bad_start_archive_stops_gunicorn_with_a_clear_error(rabbitmq_url, redis_url, tmp_path):
    # Given a start archive that is not a zip
    bad = tmp_path / "start.zip"
    bad.write_bytes(b"not a zip at all")
    env = recsys_env(
        RECSYS_BROKER_URL=rabbitmq_url, RECSYS_RESULTS_URL=redis_url, RECSYS_API_TOKEN="t",
        RECSYS_DATA_DIR=str(tmp_path / "api-data"), RECSYS_START_ENGINE=str(bad),
        RECSYS_REQUEST_QUEUE="api-start.requests", RECSYS_BUILD_QUEUE="api-start.builds",
        RECSYS_BROADCAST_EXCHANGE="api-start.broadcast",
    )
    api = Api(tmp_path, env, workers=2, threads=2)

    # When gunicorn starts
    with pytest.raises(AssertionError, match="gunicorn exited"):
        api.start()

    # Then the master stopped with the reason, and never forked a worker
    wait_until(lambda: not api.running, timeout=10, what="gunicorn to exit")
    log = api.text()
    assert "Error: the API cannot start: RECSYS_START_ENGINE=" in log
    assert "is not a valid engine archive" in log
    assert "Booting worker" not in log
    api.client.close()
