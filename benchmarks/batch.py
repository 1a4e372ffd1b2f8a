"""``POST /v1/recommendations/batch`` against 50 requests sent one after another, per engine.

    python benchmarks/batch.py [--sample 2000] [--queries 50] [--rounds 5] [--engines lexical annoy]
                               [--dataset PATH] [--write-docs]

For each engine (lexical, then the default annoy engine), an engine is built over a seeded
sample of the dataset (``--sample`` publications, seed 42; archives cached under
``<RECSYS_BENCH_CACHE or ~/.cache/recsys-bench>/batch/``) and served by the real stack of
``benchmarks/api.py`` (gunicorn with ``deploy/gunicorn.conf.py`` and ``dramatiq
recsys_workers``, 2 processes x 4 threads, a private RabbitMQ vhost and Redis database).
The queries are ``--queries`` one-sentence texts (the middle sentence of the abstracts of
other seeded publications of the dataset, k 10). Each round times

* *sequential*: the queries as ``POST /v1/recommendations``, one after another over one
  keep-alive connection;
* *batch*: one ``POST /v1/recommendations/batch`` holding them all;

and checks that both give the same recommendations. The report gives the median over the
rounds and the speed-up. ``--write-docs`` puts it into docs/benchmarks.md between the
``batch`` markers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import cache_dir, command_line, dataset_path, nested_sample, read_publications, write_section  # noqa: E402
from api import log, recsys_stack  # noqa: E402
from api_procs import amqp_url, flush_keeping_claim, private_redis_db, private_vhost  # noqa: E402

CACHE = cache_dir() / "batch"


def queries_of(publications: list[Any], sample: set[str], count: int) -> list[dict[str, Any]]:
    from recsys.text import split_sentences

    found = []
    for pub in nested_sample(publications, len(publications), seed=7):
        if pub.id in sample:
            continue
        sentences = [s for s in split_sentences(pub.abstract) if len(s.split()) >= 6]
        if sentences:
            found.append({"text": sentences[len(sentences) // 2], "k": 10})
        if len(found) == count:
            break
    return found


def archive(engine: str, publications: list[Any], size: int) -> Path:
    from recsys.build import build_archive
    from recsys.config import Settings
    from recsys.registry import Registry

    out = CACHE / f"{engine}-{size}.zip"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        log(f"building {engine} over {size} publications into {out}")
        build_archive(publications, out, engine=engine, registry=Registry.discover(),
                      settings=Settings(data_dir=CACHE / "data", cache_dir=cache_dir() / "models"))
    return out


def post(conn: http.client.HTTPConnection, path: str, body: Any) -> Any:
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise SystemExit(f"{path} answered {response.status}: {data[:500]!r}")
    return json.loads(data)


def measure(url: str, queries: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    for query in queries[:10] * 2:  # warm-up: connections, both worker processes, the encoder
        post(conn, "/v1/recommendations", query)
    post(conn, "/v1/recommendations/batch", {"queries": queries})
    sequential, batched = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        one_by_one = [post(conn, "/v1/recommendations", query) for query in queries]
        sequential.append(time.perf_counter() - started)
        started = time.perf_counter()
        together = post(conn, "/v1/recommendations/batch", {"queries": queries})
        batched.append(time.perf_counter() - started)
        for single, item in zip(one_by_one, together["results"], strict=True):
            got = [r["publication_id"] for r in item["recommendations"]]
            want = [r["publication_id"] for r in single["recommendations"]]
            if got != want:
                raise SystemExit(f"the batch answered {got} where the single request answered {want}")
    conn.close()
    seq, bat = statistics.median(sequential), statistics.median(batched)
    return {"sequential_ms": round(1000 * seq, 1), "batch_ms": round(1000 * bat, 1),
            "speedup": round(seq / bat, 2), "rounds": rounds,
            "sequential_all_ms": [round(1000 * t, 1) for t in sequential],
            "batch_all_ms": [round(1000 * t, 1) for t in batched]}


def render(rows: dict[str, dict[str, Any]], args: argparse.Namespace, load: tuple[Any, Any]) -> str:
    lines = [
        "## Batches: one request for many queries",
        "",
        f"`{command_line()}` — {args.queries} one-sentence queries (k 10) over a seeded sample of "
        f"{args.sample} publications of {args.dataset.name}, real stack (gunicorn + dramatiq, 2 x 4 threads, "
        f"RabbitMQ, Redis); median of {args.rounds} rounds. Load average before/after: "
        f"{load[0][0]:.2f} / {load[1][0]:.2f} on {os.cpu_count()} cores (a shared machine).",
        "",
        f"| engine | {args.queries} sequential requests, one keep-alive connection | one batch | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for engine, row in rows.items():
        lines.append(f"| {engine} | {row['sequential_ms']} ms | {row['batch_ms']} ms | {row['speedup']}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engines", nargs="+", default=["lexical", "annoy"], choices=["lexical", "annoy"])
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    args.dataset = dataset_path(str(args.dataset) if args.dataset else None)

    everything = read_publications(args.dataset)
    sample = nested_sample(everything, args.sample)
    queries = queries_of(everything, {p.id for p in sample}, args.queries)
    archives = {engine: archive(engine, sample, args.sample) for engine in args.engines}
    load_before = os.getloadavg()
    rows: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        run = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsys-bench-batch-")))
        vhost = stack.enter_context(private_vhost())
        redis = stack.enter_context(private_redis_db())
        for engine, path in archives.items():
            flush_keeping_claim(redis)
            log(f"starting the {engine} stack")
            with recsys_stack(engine, run, amqp_url(vhost), redis, path) as target:
                rows[engine] = measure(target["url"], queries, args.rounds)
            log(f"{engine}: {rows[engine]}")
    report = render(rows, args, (load_before, os.getloadavg()))
    print(report)
    print(json.dumps(rows))
    if args.write_docs:
        write_section("batch", report)
        log("wrote docs/benchmarks.md (batch section)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
