"""Fixtures of the worker unit tests: a StubBroker worker app over a temp data dir,
the stub engine, an in-memory KV and a fake API reached through httpx's MockTransport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest

from recsys.archive import pack
from recsys.build import build_archive
from recsys.config import Settings
from recsys.kv import MemoryKV
from recsys.testing import StubEngine, sample_publications, stub_registry
from recsys_workers.api_client import ApiClient
from recsys_workers.app import WorkerApp, create_worker_app
from tests.support.fake_api import TOKEN, FakeApi


def write_corpus(path: Path, count: int | None = None) -> Path:
    pubs = sample_publications()[:count]
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in pubs), encoding="utf-8")
    return path


def make_archive(folder: Path, count: int | None = None) -> Path:
    """A stub-engine archive (a new version each call) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"engine-{len(list(folder.iterdir()))}.zip"
    pubs = sample_publications()[:count]
    return build_archive(pubs, out, engine="stub", registry=stub_registry(), settings=Settings()).path


def make_segmented(folder: Path, segments: dict[str, bytes], count: int | None = None) -> Path:
    """A stub-engine archive (a new version each call) whose folder also holds
    ``segments`` (path -> bytes): files that later versions may share."""
    folder.mkdir(parents=True, exist_ok=True)
    number = len(list(folder.iterdir()))
    work = folder / f"work-{number}"
    work.mkdir()
    engine = StubEngine()
    engine.fit(sample_publications()[:count])
    metadata = engine.save(work)
    for rel, data in segments.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
    return pack(work, folder / f"segmented-{number}.zip", engine="stub", metadata=metadata).path


@pytest.fixture
def segmented(tmp_path: Path):
    """Call with ``{path: bytes}`` to get a new stub archive carrying those extra files."""
    folder = tmp_path / "segmented"
    return lambda segments, count=None: make_segmented(folder, segments, count)


@pytest.fixture
def fake_api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def archives(tmp_path: Path):
    """Call to get a new stub archive; ``archives(count)`` uses the first ``count`` samples."""
    folder = tmp_path / "archives"
    return lambda count=None: make_archive(folder, count)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "machine",
        api_url="http://api.test",
        api_token=TOKEN,
        engine="stub",
        source=str(write_corpus(tmp_path / "corpus.jsonl")),
        heartbeat_interval=1,
        catchup_interval=3600,
        build_lock_ttl=10,
        request_timeout=30,
    )


def make_app(settings: Settings, fake_api: FakeApi, *, kv: MemoryKV | None = None, background: bool = False,
             ) -> WorkerApp:
    api = ApiClient(settings.api_url, token=settings.api_token, transport=fake_api.transport(), sleep=lambda s: None)
    kv = kv if kv is not None else MemoryKV()
    return create_worker_app(settings, kv=kv, registry=stub_registry(), api=api, background=background)


@pytest.fixture
def app(settings: Settings, fake_api: FakeApi) -> Iterator[WorkerApp]:
    app = make_app(settings, fake_api)
    yield app
    app.close()


@pytest.fixture
def worker(app: WorkerApp) -> Iterator[dramatiq.Worker]:
    app.broker.emit_after("process_boot")
    worker = dramatiq.Worker(app.broker, worker_threads=2, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop()


def run(app: WorkerApp, actor: dramatiq.Actor, *args, **kwargs):
    """Send a message, wait for it and return its stored result."""
    message = actor.send(*args, **kwargs)
    return message.get_result(backend=app.results, block=True, timeout=30_000)
