"""Fixtures for the API's unit tests: the app on a StubBroker, an in-memory result
backend, MemoryKV and a temporary data dir, with fake actors registered under the
real actor names and run by a Dramatiq worker in this process."""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
import falcon.testing
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import Results

from recsys import protocol
from recsys.archive import Limits, VerifiedArchive, pack
from recsys.cluster import BuildLock, TaskRecords
from recsys.config import Settings
from recsys.engine import EngineMetadata
from recsys.kv import MemoryKV
from recsys_api import startup
from recsys_api.app import create_app
from recsys_api.archive_store import DiskArchiveStore, StoredVersion
from recsys_api.builds import BuildStarter
from recsys_api.memory_results import MemoryResultBackend
from recsys_api.tasks import TaskClient

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE_TIME = datetime(2026, 11, 28, 21, 18, tzinfo=UTC)

_counter = itertools.count()


def recommend_result(request: dict[str, Any], generation: int | None = 1) -> dict[str, Any]:
    """What a worker answers: one recommendation echoing the query's k."""
    return {
        "engine": {"name": "stub", "version": "20261128T211800000000Z", "generation": generation},
        "recommendations": [
            {"publication_id": "p1", "title": "A paper", "score": 0.5, "label": None, "year": 2020,
             "evidence": [{"query_sentence": "q", "sentence": "s", "score": 0.5}]}
        ][: request.get("k", 10)],
    }


def make_archive(
    folder: Path, *, minutes: int = 0, engine: str = "stub", payload: bytes = b'{"x": 1}', name: str = "data.json"
) -> Path:
    """A valid archive created ``minutes`` after BASE_TIME, holding ``name`` (``.bin`` is stored uncompressed)."""
    return pack_files(folder, {name: payload}, minutes=minutes, engine=engine).path


def pack_files(
    folder: Path, files: dict[str, bytes], *, minutes: int = 0, engine: str = "stub", leave_out: Collection[str] = (),
) -> VerifiedArchive:
    """An archive of an engine made of ``files`` (path -> bytes), created ``minutes``
    after BASE_TIME; thin when ``leave_out`` names some of their sha256s."""
    n = next(_counter)
    content = folder / f"engine-{n}"
    for rel, data in files.items():
        (content / rel).parent.mkdir(parents=True, exist_ok=True)
        (content / rel).write_bytes(data)
    content.mkdir(parents=True, exist_ok=True)
    out = folder / f"archive-{n}.zip"
    return pack(content, out, engine=engine, metadata=EngineMetadata(publications=1, sentences=1),
                created_at=BASE_TIME + timedelta(minutes=minutes), leave_out=leave_out)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RecordingBroadcaster:
    def __init__(self) -> None:
        self.published: list[StoredVersion] = []

    def publish(self, archive: StoredVersion) -> bool:
        self.published.append(archive)
        return True


@dataclass
class FakeActors:
    """The behaviour of the fake ``recommend`` and ``build_index`` actors."""

    recommend: Callable[[dict[str, Any]], Any] = recommend_result
    requests: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    builds: int = 0
    applies: int = 0
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Harness:
    settings: Settings
    broker: dramatiq.Broker
    backend: MemoryResultBackend
    kv: Any
    store: DiskArchiveStore
    broadcaster: RecordingBroadcaster
    actors: FakeActors
    tmp: Path
    app: Any = None
    worker: dramatiq.Worker | None = None

    @property
    def client(self) -> falcon.testing.TestClient:
        return falcon.testing.TestClient(self.app)

    def archive(self, minutes: int = 0, **kwargs: Any) -> Path:
        return make_archive(self.tmp / "made", minutes=minutes, **kwargs)

    def upload(self, path: Path, headers: dict[str, str] | None = None) -> falcon.testing.Result:
        return self.client.simulate_put(
            "/v1/engine/archive", body=path.read_bytes(),
            headers={"Content-Type": "application/zip", **AUTH, **(headers or {})},
        )

    def install(self, minutes: int = 0) -> StoredVersion:
        path = self.archive(minutes)
        with open(path, "rb") as stream:
            installed = self.store.install(stream, length=path.stat().st_size)
        assert installed is not None
        return installed

    def start_worker(self) -> None:
        self.worker = dramatiq.Worker(self.broker, worker_timeout=50, worker_threads=2)
        self.worker.start()

    def queued(self, queue: str) -> list[dramatiq.Message[Any]]:
        """Messages waiting on a stub queue (without consuming them)."""
        return [dramatiq.Message.decode(data) for data in list(self.broker.queues[queue].queue)]


def _register_actors(h: Harness) -> None:
    def recommend(request: dict[str, Any]) -> Any:
        h.actors.requests.append(request)
        return h.actors.recommend(request)

    def recommend_batch(request: dict[str, Any]) -> Any:
        # Like the real actor: error items pass through, each other query is answered alone.
        h.actors.batches.append(request)
        results = []
        for query in request["queries"]:
            answer = query if "error" in query else h.actors.recommend(query)
            results.append({"error": answer["error"]} if "error" in answer else
                           {"recommendations": answer["recommendations"]})
        return {"engine": recommend_result({})["engine"], "results": results}

    def build_index() -> dict[str, Any]:
        h.actors.builds += 1
        return {"version": "v"}

    dramatiq.actor(recommend, actor_name=protocol.RECOMMEND_ACTOR, queue_name=h.settings.request_queue,
                   broker=h.broker, store_results=True, max_retries=0)
    def apply_changes() -> dict[str, Any]:
        h.actors.applies += 1
        return {"status": "done", "applied": []}

    dramatiq.actor(apply_changes, actor_name=protocol.APPLY_ACTOR, queue_name=h.settings.build_queue,
                   broker=h.broker, store_results=True, max_retries=0)
    dramatiq.actor(recommend_batch, actor_name=protocol.RECOMMEND_BATCH_ACTOR, queue_name=h.settings.request_queue,
                   broker=h.broker, store_results=True, max_retries=0)
    dramatiq.actor(build_index, actor_name=protocol.BUILD_ACTOR, queue_name=h.settings.build_queue,
                   broker=h.broker, store_results=True, max_retries=0)


def build_harness(
    tmp: Path, *, worker: bool = True, run_start: bool = False, broker: Any = None, kv: Any = None,
    create: bool = True, **overrides: Any,
) -> Harness:
    """The app on stubs in ``tmp``; ``overrides`` are Settings fields. Close it with :func:`close_harness`."""
    values: dict[str, Any] = {"data_dir": tmp / "data", "api_token": TOKEN, "request_timeout": 1}
    values.update(overrides)
    settings = Settings(**values)
    backend = MemoryResultBackend()
    stub = broker if broker is not None else StubBroker()
    stub.add_middleware(Results(backend=backend, result_ttl=settings.result_ttl * 1000))
    store = DiskArchiveStore(settings.data_dir / "archives", Limits.from_settings(settings),
                             keep=settings.keep_engines)
    h = Harness(settings, stub, backend, kv if kv is not None else MemoryKV(), store, RecordingBroadcaster(),
                FakeActors(), tmp)
    _register_actors(h)
    if create:
        h.app = create_app(settings, broker=stub, result_backend=backend, kv=h.kv, archive_store=store,
                           broadcaster=h.broadcaster, registry_records=[])
    if run_start:
        run_start_step(h)
    if worker:
        h.start_worker()
    return h


def run_start_step(h: Harness) -> str:
    """The deployment's start-engine step on the harness's broker, KV and store (as
    gunicorn's master runs it once, before its workers serve)."""
    s = h.settings
    tasks = TaskClient(h.broker, h.backend, TaskRecords(h.kv, s.result_ttl), result_ttl=s.result_ttl)
    builds = BuildStarter(tasks, BuildLock(h.kv, s.build_lock_ttl), s.build_queue)
    return startup.start_engine(h.store, builds, h.broadcaster, s.start_engine)


def close_harness(h: Harness) -> None:
    if h.worker is not None:
        h.worker.stop()
    h.broker.close()


@pytest.fixture
def make_harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        h = build_harness(tmp_path, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        close_harness(h)


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()
