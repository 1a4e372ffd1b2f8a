"""Worker pool metrics: counted by each process, added up by the pool's one endpoint.

The aggregation test runs real processes (spawned interpreters), each a "worker
process" writing into the pool's folder, and reads them back through the HTTP server
the pool runs (:class:`recsys_workers.metrics.MetricsServer`).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from recsys.cluster import RolloutProgress, Rollouts
from recsys.kv import MemoryKV
from recsys.progress import ProgressRecord
from recsys_workers.metrics import (
    MetricsServer,
    WorkerMetrics,
    WorkerMetricsMiddleware,
    pool_folder,
    running_under_dramatiq,
)
from tests.support.metrics_children import worker_process
from tests.unit.workers.conftest import run


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def server(tmp_path: Path):
    made: list[MetricsServer] = []

    def start(folder: Path, **kwargs: Any) -> str:
        server = MetricsServer(folder, "127.0.0.1", 0, **kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        made.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in made:
        server.close()


def test_one_endpoint_adds_up_every_process_of_the_pool(tmp_path: Path, server) -> None:
    # Given three worker processes of one pool, each having run 4 tasks (one failed)
    folder = tmp_path / "pool"
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    children = [context.Process(target=worker_process, args=(str(folder), 4, 7, ready, stop)) for _ in range(3)]
    for child in children:
        child.start()
    try:
        for _ in children:
            status, detail = ready.get(timeout=120)
            assert status == "ok", detail
        url = server(folder)

        # When the pool's endpoint is scraped
        found = samples(httpx.get(f"{url}/metrics", timeout=10).text)

        # Then it shows the sum of the three, and each process's generation
        assert value(found, "recsys_worker_tasks_total", actor="recommend", outcome="succeeded") == 9
        assert value(found, "recsys_worker_tasks_total", actor="recommend", outcome="failed") == 3
        assert value(found, "recsys_worker_task_errors_total", actor="recommend", code="no_engine") == 3
        assert value(found, "recsys_worker_task_duration_seconds_count", actor="recommend", outcome="succeeded") == 9
        assert value(found, "recsys_worker_processes") == 3
        assert value(found, "recsys_worker_tasks_in_progress", actor="recommend") == 0
        assert value(found, "recsys_worker_engine_load_seconds_count", engine="lexical") == 3
        generations = {labels: v for (name, labels), v in found.items() if name == "recsys_worker_engine_generation"}
        assert sorted(dict(labels)["pid"] for labels in generations) == sorted(str(c.pid) for c in children)
        assert set(generations.values()) == {7.0}
    finally:
        stop.set()
        for child in children:
            child.join(30)

    # When they have exited, their counts stay and their live gauges go
    after = samples(httpx.get(f"{url}/metrics", timeout=10).text)
    assert value(after, "recsys_worker_tasks_total", actor="recommend", outcome="succeeded") == 9
    assert not value(after, "recsys_worker_processes")
    assert not any(name == "recsys_worker_engine_generation" for name, _ in after)


def test_the_endpoint_shows_this_machines_last_rollout(tmp_path: Path, server) -> None:
    kv = MemoryKV()
    data_dir = str(tmp_path / "machine")
    rollouts = Rollouts(kv)
    rollouts.report(RolloutProgress(generation=4, version="v4", data_dir=data_dir, state="fetching",
                                    bytes_needed=1000, bytes_fetched=400, bytes_reused=9000, files_needed=3,
                                    files_fetched=1, seconds=2.5))
    rollouts.report(RolloutProgress(generation=9, version="v9", data_dir="/another/machine", bytes_needed=5))

    found = samples(httpx.get(f"{server(tmp_path / 'pool', kv=kv, data_dir=data_dir)}/metrics", timeout=10).text)

    assert value(found, "recsys_worker_rollout_bytes", kind="needed") == 1000
    assert value(found, "recsys_worker_rollout_bytes", kind="fetched") == 400
    assert value(found, "recsys_worker_rollout_bytes", kind="reused") == 9000
    assert value(found, "recsys_worker_rollout_files", kind="fetched") == 1
    assert value(found, "recsys_worker_rollout_seconds") == 2.5
    assert value(found, "recsys_worker_rollout_generation") == 4
    assert value(found, "recsys_worker_rollout_state", state="fetching") == 1


def test_other_paths_are_not_found(tmp_path: Path, server) -> None:
    assert httpx.get(f"{server(tmp_path / 'pool')}/other", timeout=10).status_code == 404


def test_a_second_server_on_the_same_port_fails_to_start(tmp_path: Path, server) -> None:
    url = server(tmp_path / "a")
    with pytest.raises(OSError):
        MetricsServer(tmp_path / "b", "127.0.0.1", int(url.rsplit(":", 1)[1]))


def test_the_pools_folder_is_named_after_its_main_process(tmp_path: Path) -> None:
    mine = pool_folder(os.getpid(), base=tmp_path)
    assert mine == pool_folder(os.getpid(), base=tmp_path)
    assert mine.name.startswith(f"{os.getpid()}-"), "and its start time, so a new pool with an old pid starts clean"
    assert pool_folder(os.getppid(), base=tmp_path) != mine


@pytest.mark.parametrize(("argv", "expected"), [
    (["/usr/bin/dramatiq", "recsys_workers"], True),
    (["/venv/lib/python3.11/site-packages/dramatiq/__main__.py", "recsys_workers"], True),
    (["/usr/bin/periodiq", "recsys_workers"], False),
    (["/usr/bin/recsys", "serve"], False),
])
def test_only_the_worker_processes_of_the_dramatiq_command_serve_metrics(argv, expected, monkeypatch) -> None:
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())
    assert running_under_dramatiq(argv) is expected
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: None)
    assert running_under_dramatiq(argv) is False, "the command's main process runs no task"


def test_outside_the_dramatiq_command_the_middleware_does_nothing(app, worker) -> None:
    middleware = next(m for m in app.broker.middleware if isinstance(m, WorkerMetricsMiddleware))
    assert middleware.serve is False and middleware.metrics is None and middleware.forks == []
    assert app.services.metrics is None


def test_tasks_are_counted_by_actor_and_outcome(app, worker, fake_api) -> None:
    # Given the metrics in a registry of this process (not the multiprocess files)
    middleware = next(m for m in app.broker.middleware if isinstance(m, WorkerMetricsMiddleware))
    middleware.metrics = app.services.metrics = WorkerMetrics(CollectorRegistry())
    registry = middleware.metrics.registry

    # When a recommendation fails (no engine anywhere) and a build succeeds
    assert run(app, app.actors.recommend, {"text": "a query"})["error"]["code"] == "no_engine"
    assert "engine" in run(app, app.actors.build_index)

    # Then each is counted and timed, and the build reported its progress
    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("recsys_worker_tasks_total", actor="recommend", outcome="failed") == 1
    assert sample("recsys_worker_task_errors_total", actor="recommend", code="no_engine") == 1
    assert sample("recsys_worker_tasks_total", actor="build_index", outcome="succeeded") == 1
    assert sample("recsys_worker_task_duration_seconds_count", actor="build_index", outcome="succeeded") == 1
    assert sample("recsys_worker_tasks_in_progress", actor="build_index") == 0
    assert sample("recsys_worker_build_progress_done", stage="fetch") is not None


def test_build_progress_gauges_follow_the_record() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    metrics.build_progress(ProgressRecord("encode", 40, 100, 20.0, 3.0, "", ""))
    metrics.build_progress(ProgressRecord("fetch", 7, None, 1.0, None, "", ""))

    get = metrics.registry.get_sample_value
    assert get("recsys_worker_build_progress_done", {"stage": "encode"}) == 40
    assert get("recsys_worker_build_progress_total", {"stage": "encode"}) == 100
    assert get("recsys_worker_build_eta_seconds", {"stage": "encode"}) == 3.0
    assert get("recsys_worker_build_progress_total", {"stage": "fetch"}) is None


def test_the_generation_gauge_changes_only_when_the_engine_does() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    metrics.serving(None)
    assert metrics.registry.get_sample_value("recsys_worker_engine_generation") == 0
    metrics.serving(3)
    assert metrics.registry.get_sample_value("recsys_worker_engine_generation") == 3


def test_sampling_needs_no_engine() -> None:
    services = SimpleNamespace(settings=None, metrics=None, loaded=lambda: None)
    from recsys_workers.metrics import _sample

    _sample(services, WorkerMetrics(CollectorRegistry()))  # type: ignore[arg-type]
