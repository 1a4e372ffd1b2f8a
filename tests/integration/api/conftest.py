"""The API integration stack: gunicorn (deploy/gunicorn.conf.py, 2 processes) and one
``dramatiq recsys_workers`` pool with the lexical engine, on this session's private
RabbitMQ vhost and Redis database. Queue and exchange names are the stack's own, so
messages left by other integration modules of the session never reach it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.api.stack import TOKEN, Api, Pool
from tests.support.processes import forget_cluster_state, recsys_env


class Stack:
    def __init__(self, folder: Path, rabbitmq_url: str, redis_url: str) -> None:
        self.folder = folder
        self.env = recsys_env(
            RECSYS_BROKER_URL=rabbitmq_url,
            RECSYS_RESULTS_URL=redis_url,
            RECSYS_API_TOKEN=TOKEN,
            RECSYS_ENGINE="lexical",
            RECSYS_DATA_DIR=str(folder / "api-data"),
            RECSYS_REQUEST_QUEUE="api-it.requests",
            RECSYS_BUILD_QUEUE="api-it.builds",
            RECSYS_BROADCAST_EXCHANGE="api-it.broadcast",
            RECSYS_HEARTBEAT_INTERVAL="1",
            RECSYS_CATCHUP_INTERVAL="3600",
            RECSYS_REQUEST_TIMEOUT="30",
        )
        self.api = Api(folder, self.env)
        self.pool = Pool(folder, dict(self.env, RECSYS_API_URL=self.api.url))

    def logs(self) -> str:
        return f"--- api log ---\n{self.api.text()[-4000:]}\n--- workers log ---\n{self.pool.text()[-4000:]}"


@pytest.fixture(scope="module")
def stack(rabbitmq_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    forget_cluster_state(redis_url)
    s = Stack(tmp_path_factory.mktemp("api-stack"), rabbitmq_url, redis_url)
    try:
        s.api.start()
        s.pool.start()
        yield s
    finally:
        s.pool.stop()
        s.api.stop()
        s.api.client.close()
