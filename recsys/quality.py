"""The quality gate: a new engine measured against the current one before it may be promoted.

A build that has the engine in service at hand (``previous``, same plugin) measures both on
one query set drawn with a fixed seed from the new corpus (:func:`compare`), with the
measures of :mod:`recsys.evaluate`:

``by_id_p@10``
    same-label precision@10 of by-id queries, over the publications both engines hold;
``text_p@10``
    same-label precision@10 of text queries (a middle sentence of a publication's
    abstract, the publication itself excluded).

The comparison goes into the archive's manifest (``quality``: ``against``, the current
version; ``metrics``: ``{name: {"new", "current"}}``; ``queries``). The API refuses to make
the archive current when a metric is worse than the current engine's by more than
``RECSYS_QUALITY_TOLERANCE`` (:func:`regression`): 409 ``quality_gate``, unless the upload is
forced. There is nothing to compare (no ``quality``) for the first engine, after a change of
engine plugin, or for a corpus without labels; a rollback installs no new build.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from recsys.domain import Publication, Query
from recsys.engine import Engine
from recsys.errors import InvalidQuery, UnknownPublication
from recsys.evaluate import K, draw_queries

__all__ = ["METRICS", "SEED", "compare", "regression"]

logger = logging.getLogger(__name__)

#: The seed of the gate's query set (the same corpus always gives the same queries).
SEED = 20261204
#: Queries of each kind.
BY_ID_QUERIES = 200
TEXT_QUERIES = 200
#: The gate's metrics, each higher-is-better.
METRICS = ("by_id_p@10", "text_p@10")


def _precision(engine: Engine, query: Query, label: str) -> float | None:
    try:
        results = engine.recommend(query)
    except (UnknownPublication, InvalidQuery):
        return None
    return sum(r.label == label for r in results) / K


def compare(
    new: Engine, current: Engine, publications: Sequence[Publication], *, against: str
) -> dict[str, Any] | None:
    """Measure ``new`` and ``current`` on one query set drawn from ``publications`` (the
    new corpus); None when the corpus gives no labelled query."""
    started = time.monotonic()
    queries = draw_queries(publications, seed=SEED, by_id=BY_ID_QUERIES, text=TEXT_QUERIES, known=0)
    pairs: dict[str, list[tuple[float, float]]] = {name: [] for name in METRICS}
    for pub_id, label in queries.by_id:
        query = Query(publication_id=pub_id, k=K)
        scored = _precision(new, query, label), _precision(current, query, label)
        if scored[0] is not None and scored[1] is not None:  # held by both
            pairs["by_id_p@10"].append((scored[0], scored[1]))
    for sentence, label, source in queries.text:
        query = Query(text=sentence, k=K, exclude_ids=frozenset({source}))
        scored = _precision(new, query, label), _precision(current, query, label)
        if scored[0] is not None and scored[1] is not None:
            pairs["text_p@10"].append((scored[0], scored[1]))
    metrics = {
        name: {"new": round(sum(n for n, _ in got) / len(got), 4),
               "current": round(sum(c for _, c in got) / len(got), 4)}
        for name, got in pairs.items() if got
    }
    if not metrics:
        logger.info("quality gate: the corpus gives no labelled query; nothing to compare")
        return None
    logger.info("quality gate: new engine against %s on %s in %.1fs: %s", against,
                {name: len(got) for name, got in pairs.items()}, time.monotonic() - started,
                ", ".join(f"{name} {m['new']} (current {m['current']})" for name, m in metrics.items()))
    return {"against": against, "metrics": metrics, "queries": {name: len(got) for name, got in pairs.items()},
            "seed": SEED}


def regression(quality: dict[str, Any] | None, tolerance: float) -> tuple[str, float, float] | None:
    """The first metric of ``quality`` worse than the current engine's by more than
    ``tolerance``, as ``(metric, new, current)``; None when none is (or nothing was compared)."""
    if not quality:
        return None
    for name, pair in sorted(quality.get("metrics", {}).items()):
        new, current = float(pair["new"]), float(pair["current"])
        if current - new > tolerance + 1e-9:
            return name, new, current
    return None
