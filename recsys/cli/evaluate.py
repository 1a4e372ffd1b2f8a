"""``recsys evaluate``: engines side by side on a labelled corpus (:mod:`recsys.evaluate`)."""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from recsys.config import Settings
from recsys.errors import ConfigError
from recsys.registry import Registry

__all__ = ["add_command"]

logger = logging.getLogger("recsys.cli")


def add_command(commands: Any) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="measure engines on a labelled corpus (by-id, text, known-item and like queries)",
        description="Build each engine over the corpus (and once more with titles left out, for known-item "
        "queries) and print same-label precision@10 of by-id and text queries, and MRR@10 and recall@1/@10 of "
        "known-item queries (a title as the query), and of like queries (three publications of one label: the "
        "engine's answer, the best-score combination, the best and the mean of the three alone). See "
        "docs/benchmarks.md for the measures.",
    )
    evaluate.add_argument("--source", help="labelled JSON/JSONL(.gz) file or URL (default: RECSYS_SOURCE, else demo)")
    evaluate.add_argument("--engine", action="append", default=[], help="engine plugin (repeat; default: "
                          "RECSYS_ENGINE)")
    evaluate.add_argument("--archive", action="append", default=[], type=Path, metavar="ARCHIVE.zip",
                          help="also measure a built engine (by-id and text queries only: its known-item "
                               "twin cannot be built from an archive)")
    evaluate.add_argument("--sample", type=int, help="a seeded sample of this many publications (default: all)")
    evaluate.add_argument("--seed", type=int, default=42, help="seed of the sample and the queries (default: 42)")
    evaluate.add_argument("--queries", type=int, default=300, metavar="N",
                          help="queries of each kind (default: 300; by-id: N, text: N, known-item: N, like: N)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recsys import evaluate
    from recsys.sources import load_publications, open_source

    settings = Settings.from_env()
    if args.sample is not None and args.sample < 2:
        raise ConfigError("--sample must be at least 2 publications")
    if args.queries < 1:
        raise ConfigError("--queries must be at least 1")
    engines = args.engine or ([] if args.archive else [settings.engine])
    registry = Registry.discover(load=True)
    for name in engines:
        registry.get(name)  # fail before reading anything
    source = open_source(args.source if args.source is not None else settings.source, settings)
    publications = load_publications(source)
    if args.sample is not None and args.sample < len(publications):
        publications = random.Random(args.seed).sample(publications, args.sample)
    queries = evaluate.draw_queries(publications, seed=args.seed, by_id=args.queries, text=args.queries,
                                    known=args.queries, like=args.queries)
    if not queries.by_id:
        raise ConfigError(f"{source.description} has no label that two publications share: nothing to measure "
                          "(evaluate needs a labelled corpus)")
    report: dict[str, Any] = {"corpus": {"source": source.description, "publications": len(publications),
                                         "sample": args.sample, "seed": args.seed},
                              "queries": queries.to_dict(), "engines": {}}
    for name in engines:
        logger.info("evaluate: building %s over %d publications (and again without titles)", name,
                    len(publications))
        started = time.monotonic()
        with registry.get(name)(settings) as engine:
            engine.fit(publications)
            built = time.monotonic() - started
            with registry.get(name)(settings) as withheld:
                withheld.fit(evaluate.withhold_titles(publications))
                measured = evaluate.evaluate(engine, queries, titles_withheld=withheld)
        report["engines"][name] = dict(measured, build_seconds=round(built, 1))
    for path in args.archive:
        report["engines"][str(path)] = _measure_archive(path, settings, registry, queries)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


def _measure_archive(path: Path, settings: Settings, registry: Registry, queries: Any) -> dict[str, Any]:
    from recsys import evaluate
    from recsys.archive import Limits, unpack
    from recsys.load import load_engine

    with tempfile.TemporaryDirectory(prefix=".recsys-evaluate-") as tmp:
        folder = Path(tmp) / "engine"
        unpack(path, folder, Limits.from_settings(settings), engines=registry.usable())
        with load_engine(folder, registry=registry, settings=settings) as engine:
            return evaluate.evaluate(engine, queries)


def _print_table(report: dict[str, Any]) -> None:
    corpus, queries = report["corpus"], report["queries"]
    print(f"corpus: {corpus['source']}, {corpus['publications']} publications (seed {corpus['seed']}); queries: "
          f"{queries['by_id']} by id, {queries['text']} text, {queries['known_item']} known-item, "
          f"{queries.get('like', 0)} like")
    print(f"{'engine':<24} {'by-id p@10':>10} {'text p@10':>10} {'known MRR@10':>12} {'R@1':>6} {'R@10':>6} "
          f"{'ms/query':>9}")
    for name, m in report["engines"].items():
        known = m["known_item"] or {}
        print(f"{name:<24} {_num(m['by_id']['p@10']):>10} {_num(m['text']['p@10']):>10} "
              f"{_num(known.get('mrr@10')):>12} {_num(known.get('recall@1')):>6} {_num(known.get('recall@10')):>6} "
              f"{_num(m['ms_per_query']):>9}")
    liked = {name: m["like"] for name, m in report["engines"].items() if m.get("like")}
    if liked:
        print(f"\nlike (same-label p@10 of {next(iter(liked.values()))['size']} liked publications)")
        print(f"{'engine':<24} {'like':>8} {'best-score':>10} {'best single':>11} {'mean single':>11}")
        for name, m in liked.items():
            print(f"{name:<24} {_num(m['p@10']):>8} {_num(m['best_score_p@10']):>10} "
                  f"{_num(m['best_single_p@10']):>11} {_num(m['mean_single_p@10']):>11}")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
