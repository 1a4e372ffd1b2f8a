"""Live publication updates end to end on the distributed stack (gunicorn, two worker
pools as two "machines", RabbitMQ, Redis), the lexical engine, a publications backend
played by the test; and against ``recsys serve`` with ``recsys push``.

A push is answered 202 once durable; an apply (a delta segment plus tombstones, a
thin upload) makes it current, every worker process serves it; a delete is never
recommended again, also after a full rebuild from a source that still has it; a
rollback past an apply marks its changes rolled back; and a change survives a kill -9
of the API right after its 202.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import compose
from tests.e2e.backend import PublicationsBackend, demo_corpus
from tests.e2e.serve import ServeProcess, write_sample_corpus
from tests.e2e.stack import TOKEN, Stack, flush_redis, process_env
from tests.support.processes import BIN, wait_until

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PUSHED = [
    {"id": "live-new-1", "title": "Tardigrades survive desiccation by vitrifying their cytoplasm",
     "abstract": "Tardigrade disordered proteins vitrify the cytoplasm so that tardigrades survive desiccation.",
     "label": "biology", "year": 2026},
    {"id": "live-new-2", "title": "Cryptobiosis of tardigrades under vacuum and radiation",
     "abstract": "Tardigrades in cryptobiosis survive vacuum, radiation and desiccation for years.",
     "label": "biology", "year": 2025},
]
QUERY = "How do tardigrades survive desiccation in cryptobiosis?"


def ids(result: dict[str, Any]) -> list[str]:
    return [item["publication_id"] for item in result["recommendations"]]


def push(stack: Stack, body: dict[str, Any]) -> int:
    response = stack.http.post("/v1/publications", json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    return int(response.json()["change_id"])


def wait_status(stack: Stack, change_id: int, timeout: float = 60.0) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        body: dict[str, Any] = stack.http.get(f"/v1/publications/changes/{change_id}").json()
        return None if body["status"] == "pending" else body

    return wait_until(ended, timeout=timeout, what=f"change {change_id} to leave 'pending'", interval=0.2)


def served_everywhere(stack: Stack, generation: int, query: str, k: int = 5) -> list[list[str]]:
    """Every worker process serves ``generation`` (GET /v1/workers), then several strict queries."""
    stack.wait_converged(generation, pools=list(stack.pools))
    return [ids(stack.recommendations(text=query, k=k, strict=True)) for _ in range(6)]


@pytest.fixture(scope="module")
def corpus() -> Iterator[PublicationsBackend]:
    server = PublicationsBackend(demo_corpus())
    with server.serve():
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str, redis_url: str,
          corpus: PublicationsBackend) -> Iterator[Stack]:
    flush_redis(redis_url)
    folder: Path = tmp_path_factory.mktemp("live-stack")
    stack = Stack(folder, broker_url=rabbitmq_url, results_url=redis_url, source=corpus.url, engine="lexical",
                  worker_args=("--processes", "1"), settings={"RECSYS_CHANGES_RESEND_INTERVAL": "2"})
    try:
        stack.start(scheduler=False)
        first = wait_until(stack.engine, timeout=180, what="the first engine (GET /v1/engine)")
        stack.wait_converged(first["generation"], pools=list(stack.pools))
        yield stack
    finally:
        stack.close()
        flush_redis(redis_url)


def test_a_push_is_served_by_every_worker_process_within_seconds(stack: Stack) -> None:
    before = stack.engine()
    assert before is not None
    started = time.monotonic()
    change_id = push(stack, {"upsert": PUSHED})
    change = wait_status(stack, change_id)
    assert change["status"] == "applied", change
    for found in served_everywhere(stack, change["generation"], QUERY):
        assert set(found[:2]) == {p["id"] for p in PUSHED}, found
    seconds = time.monotonic() - started
    assert seconds < 30, seconds
    current = stack.engine()
    assert current is not None and current["kind"] == "apply" and current["changes_through"] >= change_id
    assert current["quality_gate"]["outcome"] == "not_applied"
    assert current["publications"] == before["publications"] + len(PUSHED)
    # the machines fetched a small share of the engine (a delta segment and tombstones)
    rollouts = [r for r in stack.workers()["rollouts"] if r["generation"] == change["generation"]]
    assert rollouts and all(r["bytes_fetched"] < 0.5 * current["bytes"] for r in rollouts), rollouts


def test_a_delete_is_never_recommended_again_even_after_a_full_rebuild(stack: Stack,
                                                                       corpus: PublicationsBackend) -> None:
    victim = corpus.publications[5]  # the source keeps it
    assert victim["id"] in ids(stack.recommendations(text=victim["title"], k=10))
    change = wait_status(stack, push(stack, {"delete": [victim["id"]]}))
    assert change["status"] == "applied", change
    for found in served_everywhere(stack, change["generation"], victim["title"], k=10):
        assert victim["id"] not in found
    # a full rebuild reads the source (which still has it) and the pushed set
    engine = stack.build()
    for found in served_everywhere(stack, engine["generation"], victim["title"], k=10):
        assert victim["id"] not in found
    current = stack.engine()
    assert current is not None and current["kind"] == "build" and current["changes_through"] >= change["change_id"]
    gone = stack.recommend(publication_id=victim["id"], k=3)
    assert gone.status_code == 404, gone.text
    listed = stack.http.get("/v1/publications/changes", params={"id": victim["id"]}).json()["changes"]
    assert [(c["change_id"], c["status"]) for c in listed] == [(change["change_id"], "applied")]


def test_a_rollback_past_an_apply_marks_its_changes_rolled_back(stack: Stack) -> None:
    record = {"id": "live-rollback-1", "title": "Ocelots hunt by moonlight in the cloud forest",
              "abstract": "Ocelot activity in the cloud forest peaks under moonlight."}
    change = wait_status(stack, push(stack, {"upsert": [record]}))
    assert change["status"] == "applied"
    rolled = stack.http.post("/v1/engine/rollback", headers=AUTH)
    assert rolled.status_code == 200, rolled.text
    after = stack.http.get(f"/v1/publications/changes/{change['change_id']}").json()
    assert after["status"] == "rolled_back", after
    for found in served_everywhere(stack, rolled.json()["generation"], record["title"], k=10):
        assert record["id"] not in found
    # not re-applied by the resender (RECSYS_CHANGES_RESEND_INTERVAL=2)
    time.sleep(5)
    assert stack.engine()["generation"] == rolled.json()["generation"]  # type: ignore[index]


def test_a_change_survives_a_kill_9_of_the_api_right_after_its_202(stack: Stack) -> None:
    record = {"id": "live-crash-1", "title": "Narwhal tusks sense salinity gradients in Arctic water",
              "abstract": "Narwhal tusks carry nerve endings that sense salinity in Arctic water."}
    change_id = push(stack, {"upsert": [record]})
    stack.api.kill9()  # right after the 202: whatever was in flight is lost, the commit is not
    stack.api.restart()
    stack.wait_healthy()
    change = wait_status(stack, change_id, timeout=90)
    assert change["status"] == "applied", change
    for found in served_everywhere(stack, change["generation"], record["title"], k=3):
        assert found[0] == record["id"]


def test_recsys_push_against_recsys_serve(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, {"RECSYS_ENGINE": "lexical",
                                     "RECSYS_SOURCE": str(write_sample_corpus(tmp_path / "corpus.jsonl"))}).start()
    try:
        server.wait_ready(timeout=120)
        token = re.search(r"API token for this run: (\S+)", server.text())
        assert token, server.text()
        pushed = tmp_path / "push.jsonl"
        pushed.write_text("".join(json.dumps(p) + "\n" for p in PUSHED), encoding="utf-8")
        env = process_env({"RECSYS_API_URL": server.url, "RECSYS_API_TOKEN": token[1]})
        done = subprocess.run([str(BIN / "recsys"), "-q", "push", str(pushed), "--wait", "--timeout", "60"],
                              env=env, cwd=compose.ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"change 1: applied by engine generation \d+", done.stdout), done.stdout
        found = httpx.post(f"{server.url}/v1/recommendations", json={"text": QUERY, "k": 3}, timeout=30).json()
        assert set(ids(found)[:2]) == {p["id"] for p in PUSHED}, found
        deleted = subprocess.run([str(BIN / "recsys"), "-q", "push", "--delete", "live-new-1", "--wait"],
                                 env=env, cwd=compose.ROOT, capture_output=True, text=True, timeout=120)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        found = httpx.post(f"{server.url}/v1/recommendations", json={"text": QUERY, "k": 3}, timeout=30).json()
        assert "live-new-1" not in ids(found)
    finally:
        server.kill9()
