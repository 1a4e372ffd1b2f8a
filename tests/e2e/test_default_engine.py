"""One round trip of the distributed stack with the default engine (annoy: a
SentenceTransformer and Annoy, on torch/onnxruntime) over the bundled demo corpus.

One pool with one process: two cores cannot carry more torch processes through CI.
The API's start step builds the first engine; the test waits for it and asks for
recommendations by text and by publication id.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.registry import Registry
from tests.e2e.stack import Stack, flush_redis
from tests.support.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str, redis_url: str) -> Iterator[Stack]:
    installed = {record.name for record in Registry.discover(load=False).records()}
    assert "annoy" in installed, f"the default engine plugin is not installed (installed: {sorted(installed)})"
    flush_redis(redis_url)
    folder: Path = tmp_path_factory.mktemp("annoy-stack")
    # RECSYS_SOURCE empty: the demo corpus; RECSYS_ENGINE: the default.
    stack = Stack(folder, broker_url=rabbitmq_url, results_url=redis_url, source="", engine="annoy",
                  pools=("a",), worker_args=("--processes", "1"), api_workers=1,
                  settings={"RECSYS_REQUEST_TIMEOUT": "60"})
    try:
        yield stack.start(scheduler=False)
    finally:
        stack.close()
        flush_redis(redis_url)


def test_round_trip_with_the_default_engine(stack: Stack) -> None:
    engine = wait_until(stack.engine, timeout=600, what="the first annoy engine (GET /v1/engine)", interval=1.0)
    assert engine["engine"] == "annoy"
    stack.wait_converged(engine["generation"], pools=["a"])

    by_text = stack.recommendations(text="Graph neural networks predict properties of molecules.", k=5)
    assert by_text["engine"] == {"name": "annoy", "version": engine["version"], "generation": engine["generation"]}
    assert len(by_text["recommendations"]) == 5
    assert all(item["label"] == "graph-neural-networks" for item in by_text["recommendations"][:3]), by_text
    first = by_text["recommendations"][0]
    assert first["evidence"] and first["evidence"][0]["query_sentence"].startswith("Graph neural networks")

    by_id = stack.recommendations(publication_id=first["publication_id"], k=3)
    assert first["publication_id"] not in [item["publication_id"] for item in by_id["recommendations"]]
    assert by_id["recommendations"][0]["label"] == first["label"]
