"""A test cluster: a fake API (engine endpoints and a publications backend) served
over HTTP, two worker pools started with the dramatiq CLI (two "machines"), and a
client broker that sends messages and reads results, all on this session's private
RabbitMQ vhost and Redis database. Every process started here is killed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from recsys.archive import pack
from recsys.build import build_archive
from recsys.config import Settings
from recsys.registry import GROUP, Registry
from recsys.testing import sample_publications
from recsys_workers.broker import create_broker
from tests.integration.workers.cluster import Pool, publish_broadcast, serving, write_test_plugins
from tests.support.fake_api import TOKEN, FakeApi, Stored
from tests.support.processes import ROOT, recsys_env, wait_until

ENGINES = Registry([
    EntryPoint("lexical", "recsys_engine_lexical:LexicalEngine", GROUP),
    EntryPoint("gated", "tests.integration.workers.gated:GatedEngine", GROUP),
])


class Cluster:
    def __init__(self, folder: Path, api: FakeApi, api_url: str, rabbitmq_url: str, redis_url: str) -> None:
        self.folder, self.api, self.api_url = folder, api, api_url
        self.rabbitmq_url, self.redis_url = rabbitmq_url, redis_url
        self.env = recsys_env(
            pythonpath=f"{write_test_plugins(folder / 'plugins')}:{ROOT}",
            drop=("TESTENGINE_",),
            RECSYS_BROKER_URL=rabbitmq_url,
            RECSYS_RESULTS_URL=redis_url,
            RECSYS_API_URL=api_url,
            RECSYS_API_TOKEN=TOKEN,
            RECSYS_ENGINE="lexical",
            RECSYS_SOURCE=f"{api_url}/publications",
            RECSYS_SOURCE_TIMEOUT="300",
            RECSYS_SOURCE_RETRIES="0",
            RECSYS_HEARTBEAT_INTERVAL="1",
            RECSYS_CATCHUP_INTERVAL="3600",
            RECSYS_BUILD_LOCK_TTL="10",
            RECSYS_REQUEST_TIMEOUT="60",
        )
        self.pools = {name: Pool(name, folder / f"machine-{name}", self.env) for name in ("a", "b")}
        self.client = create_broker(Settings(broker_url=rabbitmq_url, results_url=redis_url, request_timeout=60))
        self.results = self.client.get_results_backend()
        self._archives = 0
        self.others: list = []

    def archive(self, engine: str = "lexical", *, count: int | None = None, padding: bytes | None = None) -> Path:
        """Build a new archive (a new version) in the test process over the first ``count``
        sample publications; ``padding``: an extra file ``padding.bin`` the engine ignores."""
        self._archives += 1
        out = self.folder / "archives" / f"{self._archives}-{engine}.zip"
        publications = sample_publications()[:count]
        if padding is None:
            return build_archive(publications, out, engine=engine, registry=ENGINES, settings=Settings()).path
        work = self.folder / "archives" / f"{self._archives}-work"
        work.mkdir(parents=True)
        with ENGINES.get(engine)(Settings()) as instance:
            instance.fit(publications)
            metadata = instance.save(work)
        (work / "padding.bin").write_bytes(padding)
        return pack(work, out, engine=engine, metadata=metadata).path

    def broadcast(self, stored: Stored, **changes) -> None:
        """Broadcast as the API does (generation, version, created_at, manifest_sha256)."""
        kwargs = {"generation": stored.generation, "version": stored.version, "created_at": stored.created_at,
                  "manifest_sha256": stored.manifest_sha256}
        kwargs.update(changes)
        publish_broadcast(self.rabbitmq_url, **{k: v for k, v in kwargs.items() if v is not None})

    def running(self) -> list[Pool]:
        return [pool for pool in self.pools.values() if pool.running]

    def wait_serving(self, generation: int, pools: list[Pool] | None = None, timeout: float = 90.0) -> dict:
        pools = self.running() if pools is None else pools
        return {pool.name: wait_until(lambda p=pool: serving(self.redis_url, p, generation), timeout=timeout,
                                      what=f"every process of pool {pool.name} to serve generation {generation}")
                for pool in pools}

    def converge(self) -> Stored:
        """Both pools running and serving the API's current engine."""
        for pool in self.pools.values():
            if not pool.running:
                pool.restart()
        current = self.api.current
        assert current is not None
        self.broadcast(current)
        self.wait_serving(current.generation)
        return current

    def send(self, actor_name: str, queue: str, *args, **options):
        import dramatiq

        message = dramatiq.Message(queue_name=queue, actor_name=actor_name, args=args, kwargs={}, options=options)
        return self.client.enqueue(message)

    def result(self, message, timeout: float = 90.0):
        return self.results.get_result(message, block=True, timeout=int(timeout * 1000))

    def close(self) -> None:
        for process in [*self.pools.values(), *self.others]:
            process.kill9()
        self.client.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, rabbitmq_url, redis_url) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("cluster")
    api = FakeApi()
    api.publications = [p.to_dict() for p in sample_publications()]
    with api.serve() as api_url:
        cluster = Cluster(folder, api, api_url, rabbitmq_url, redis_url)
        api.on_upload = cluster.broadcast  # the API broadcasts each accepted upload
        try:
            api.publish(cluster.archive())
            for pool in cluster.pools.values():
                pool.start()
            cluster.wait_serving(api.current.generation)
            yield cluster
        finally:
            cluster.close()
