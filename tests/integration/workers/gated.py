"""A test engine: the lexical engine with gates, registered as ``gated`` by the test
distribution that :func:`tests.integration.workers.cluster.write_test_plugins` writes.

When ``TESTENGINE_RECOMMEND_GATE`` (or ``TESTENGINE_FIT_GATE``) names a file, each
recommend (fit) first appends this process's pid to the file named by
``TESTENGINE_RECOMMEND_STARTED`` (``TESTENGINE_FIT_STARTED``), then waits until the
gate file exists. Without those variables it is exactly the lexical engine. Only
tests set them; production code knows nothing of this engine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from recsys.domain import Publication, Query, Recommendation
from recsys.engine import NULL_PROGRESS, Progress
from recsys_engine_lexical import LexicalEngine

GATE_WAIT = 600.0


def _pass_gate(kind: str) -> None:
    gate = os.environ.get(f"TESTENGINE_{kind}_GATE")
    if not gate:
        return
    started = os.environ.get(f"TESTENGINE_{kind}_STARTED")
    if started:
        with open(started, "a", encoding="utf-8") as marker:
            marker.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + GATE_WAIT
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class GatedEngine(LexicalEngine):
    name: ClassVar[str] = "gated"

    def fit(
        self, publications: Sequence[Publication], *, progress: Progress = NULL_PROGRESS, previous: Path | None = None
    ) -> None:
        _pass_gate("FIT")
        super().fit(publications, progress=progress, previous=previous)

    def recommend(self, query: Query) -> list[Recommendation]:
        _pass_gate("RECOMMEND")
        return super().recommend(query)
