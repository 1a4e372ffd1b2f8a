"""Delta rollout end to end: after a small change of the corpus, each machine
downloads only the files it lacks, and serves the change.

The distributed stack (API under gunicorn, two worker pools with a data dir each: two
"machines"), the lexical engine, a publications backend played by the test. The
first build ships everything; after adding, replacing and removing a few
publications, the rebuild is incremental (a new segment and tombstones), the
builder uploads a thin archive, and each machine fetches the new files by sha256
(``GET /v1/engine/files/{sha256}``), reporting its progress in ``/v1/workers``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.backend import PublicationsBackend, demo_corpus
from tests.e2e.stack import Stack, flush_redis
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e

ADDED = [
    {"id": "delta-new-1", "title": "Axolotl limb regeneration is guided by positional memory of fibroblasts",
     "abstract": "Axolotl fibroblasts keep a positional memory that guides limb regeneration. "
                 "Grafted axolotl fibroblasts rebuilt the missing limb segments.",
     "label": "regeneration", "year": 2026},
    {"id": "delta-new-2", "title": "Blastema cells of the axolotl reuse embryonic limb programs",
     "abstract": "Single-cell atlases of axolotl blastema cells show embryonic limb programs switched on again "
                 "during regeneration.",
     "label": "regeneration", "year": 2025},
]
QUERY = "How do axolotls regenerate limbs from a blastema?"
REPLACED_TEXT = ("Magnetotactic bacteria align chains of magnetosomes with the geomagnetic field. "
                 "Magnetosome chains steer magnetotactic bacteria in sediment.")


def ids(result: dict[str, Any]) -> list[str]:
    return [item["publication_id"] for item in result["recommendations"]]


@pytest.fixture(scope="module")
def corpus() -> Iterator[PublicationsBackend]:
    server = PublicationsBackend(demo_corpus())
    with server.serve():
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str, redis_url: str,
          corpus: PublicationsBackend) -> Iterator[Stack]:
    flush_redis(redis_url)
    folder: Path = tmp_path_factory.mktemp("delta-stack")
    stack = Stack(folder, broker_url=rabbitmq_url, results_url=redis_url, source=corpus.url, engine="lexical",
                  worker_args=("--processes", "1"))
    try:
        yield stack.start(scheduler=False)
    finally:
        stack.close()
        flush_redis(redis_url)


def rollouts_of(stack: Stack, generation: int) -> list[dict[str, Any]]:
    """Each machine's finished rollout of ``generation`` from GET /v1/workers (both pools)."""
    body = stack.workers()
    done = [r for r in body.get("rollouts", []) if r["generation"] == generation and r["state"] == "done"]
    return done if len(done) == len(stack.pools) else []


def test_a_small_change_ships_only_the_new_files_to_each_machine(stack: Stack, corpus: PublicationsBackend) -> None:
    first = wait_until(stack.engine, timeout=180, what="the first engine (GET /v1/engine)")
    stack.wait_converged(first["generation"], pools=["a", "b"])
    engine_bytes = first["bytes"]
    assert first["manifest_sha256"] and engine_bytes > 0

    # Given a 2% change: two new publications, one replaced (same id, new text), one removed.
    victim, replaced = corpus.publications[3], dict(corpus.publications[7])
    replaced.update(title="Magnetotactic bacteria steer with magnetosome chains", abstract=REPLACED_TEXT)
    corpus.add([*ADDED, replaced])
    corpus.remove([victim["id"]])

    # When the stack rebuilds and rolls the engine out.
    engine = stack.build()
    assert engine["generation"] > first["generation"]
    stack.wait_converged(engine["generation"], pools=["a", "b"])
    current = stack.engine()
    assert current is not None and current["manifest_sha256"] != first["manifest_sha256"]
    assert current["publications"] == len(corpus.publications)

    # Then each machine fetched only what it lacked: a small share of the engine (the
    # machine that built it fetched nothing: it installed its own build).
    reports = wait_until(lambda: rollouts_of(stack, engine["generation"]), timeout=30,
                         what="both machines' rollout reports in GET /v1/workers")
    assert len({r["data_dir"] for r in reports}) == 2, reports
    for report in reports:
        assert report["bytes_fetched"] == report["bytes_needed"], report
        assert report["bytes_reused"] > 0, report
        assert report["bytes_fetched"] < 0.25 * current["bytes"], (report, current["bytes"])
    assert max(r["bytes_fetched"] for r in reports) > 0, reports

    # And every process serves the change: new ones found, the replaced one by its new
    # text, the removed one never.
    for _ in range(4):  # several requests: both pools' processes answer
        found = stack.recommendations(text=QUERY, k=5)
        assert set(ids(found)[:2]) == {p["id"] for p in ADDED}, found
        assert found["engine"]["generation"] == engine["generation"]
        assert ids(stack.recommendations(text=REPLACED_TEXT, k=3))[0] == replaced["id"]
        assert victim["id"] not in ids(stack.recommendations(text=victim["title"], k=10))
    gone = stack.recommend(publication_id=victim["id"], k=3)
    assert gone.status_code == 404 and gone.json()["code"] == "unknown_publication", gone.text
