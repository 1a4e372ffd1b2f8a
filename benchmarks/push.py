"""Live updates: push 10 publications, then delete them, and time each until every worker
process serves it.

    python benchmarks/push.py [--dataset PATH] [--engine lexical] [--engine annoy] [--size 1000]
                              [--count 10] [--write-docs]

Starts on this machine, and stops at the end: the real API (``gunicorn recsys_api.wsgi:app``,
2 workers) and two worker pools ``dramatiq recsys_workers --processes 2 --threads 2``, each with
its own data dir (two "machines"), on a private RabbitMQ vhost and a free Redis database, as
benchmarks/rollout.py does (its helpers). The source is a JSONL file of a seeded sample of the
dataset (``--size``, default 1,000; never the whole dataset by default), minus ``--count``
held-out publications that are pushed. The first engine is built here once (benchmark cache)
and installed by the API at start (``RECSYS_START_ENGINE``). Then:

* **push**: ``POST /v1/publications`` with the ``--count`` held-out publications as upserts;
* **delete**: ``POST /v1/publications`` with their ids as deletes.

For each: *push → all serving* is from the POST to the last of the 4 worker processes serving
the apply's generation (their log lines: the apply's fetch and incremental build, the thin
upload, the broadcast, each machine's download of the missing files, the load); *download per
machine* is each machine's rollout report (``GET /v1/workers``) against the engine's size; the
checks ask the stack (several times, so both pools answer) that every pushed publication is
recommended for its title, and no deleted one ever. ``--write-docs`` writes the table into
docs/benchmarks.md between the ``push`` markers. Needs RabbitMQ and Redis (``RECSYS_BENCH_AMQP``,
``RECSYS_BENCH_REDIS``) and the engine plugins.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import rollout  # noqa: E402
from _common import command_line, nested_sample, read_publications, write_section  # noqa: E402
from rollout import (  # noqa: E402
    DATASET,
    POOLS,
    PROCESSES,
    THREADS,
    free_redis_db,
    private_vhost,
    serving_times,
    start_archive,
    wait_until,
    write_source,
)

from recsys.domain import Publication  # noqa: E402

TOKEN = rollout.TOKEN


@dataclass
class Measure:
    engine: str
    action: str
    count: int
    publications: int
    engine_bytes: int
    downloads: list[int]
    seconds: float
    applied: float
    checks: list[str]


class Stack(rollout.Stack):
    """benchmarks/rollout.py's stack (API + two pools, this checkout's code), and the live-update calls."""

    def push(self, body: dict[str, Any]) -> tuple[int, float]:
        started = time.time()
        response = self.http.post("/v1/publications", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        if response.status_code != 202:
            raise SystemExit(f"POST /v1/publications: {response.status_code} {response.text[:300]}")
        return int(response.json()["change_id"]), started

    def change(self, change_id: int) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"/v1/publications/changes/{change_id}").json()
        return body


def timed(stack: Stack, body: dict[str, Any], engine: str, action: str, count: int,
          check: Any) -> Measure:
    change_id, started = stack.push(body)
    change = wait_until(lambda: (c := stack.change(change_id))["status"] != "pending" and c, 600,
                        f"change {change_id} to be applied", interval=0.05)
    applied = time.time() - started
    if change["status"] != "applied":
        raise SystemExit(f"change {change_id} was not applied: {change}")
    generation = int(change["generation"])
    times = wait_until(lambda: (t := serving_times(stack.pools, generation)) and len(t) == POOLS * PROCESSES and t,
                       600, f"every worker process to serve generation {generation}")
    reports = wait_until(lambda: (r := [x for x in stack.http.get("/v1/workers").json().get("rollouts", [])
                                        if x.get("generation") == generation and x.get("state") == "done"])
                         and len(r) == POOLS and r, 60, "both machines' rollout reports")
    current = stack.http.get("/v1/engine").json()
    return Measure(engine, action, count, int(current["publications"]), int(current.get("bytes") or 0),
                   [int(r["bytes_fetched"]) for r in reports], max(times.values()) - started, applied, check())


def run(engine: str, corpus: list[Publication], pushed: list[Publication], label: str, work: Path,
        amqp_url: str, redis_url: str) -> list[Measure]:
    work.mkdir(parents=True, exist_ok=True)
    source = work / "source.jsonl"
    write_source(source, corpus)
    start = start_archive(engine, corpus, label)
    stack = Stack(work / engine, engine, source, start, amqp_url, redis_url)
    measures = []
    try:
        wait_until(lambda: len(serving_times(stack.pools, 1)) == POOLS * PROCESSES, 900,
                   "the pools to load the first engine")

        def found() -> list[str]:
            return sorted({f"pushed {p.id} not recommended for its title" for _ in range(4) for p in pushed
                           if p.id not in stack.recommend(p.title)})

        def gone() -> list[str]:
            return sorted({f"deleted {p.id} still recommended" for _ in range(4) for p in pushed
                           if p.id in stack.recommend(p.title, k=20)})

        for action, body, check in (("push", {"upsert": [p.to_dict() for p in pushed]}, found),
                                    ("delete", {"delete": [p.id for p in pushed]}, gone)):
            measure = timed(stack, body, engine, action, len(pushed), check)
            print(describe(measure), flush=True)
            measures.append(measure)
    finally:
        stack.close()
    return measures


def describe(m: Measure) -> str:
    downloads = " / ".join(f"{d / 1e3:.1f} kB ({100 * d / max(m.engine_bytes, 1):.2f}%)" for d in m.downloads)
    return (f"{m.engine}, {m.publications:,} publications, {m.engine_bytes / 1e6:.1f} MB engine, {m.action} of "
            f"{m.count}: applied after {m.applied:.1f} s, all {POOLS * PROCESSES} processes serving after "
            f"{m.seconds:.1f} s, download per machine {downloads}, checks "
            f"{'ok' if not m.checks else '; '.join(m.checks[:3])}")


def table(measures: list[Measure]) -> str:
    lines = [
        f"Live updates with {POOLS} pools x {PROCESSES} processes (`dramatiq recsys_workers --processes {PROCESSES} "
        f"--threads {THREADS}`, one data dir each: two machines), the real API (`gunicorn recsys_api.wsgi:app`), "
        "RabbitMQ and Redis on this 2-core machine, no full build running. *applied*: from `POST "
        "/v1/publications` to its change's status `applied` (the apply's fetch, incremental build and thin "
        "upload); *all serving*: to the last of the 4 worker processes serving that generation (broadcast, "
        "download of the missing files, load). Downloads: each machine's rollout report (the apply's machine "
        "installs its own build: 0 B).",
        "",
        "| engine | publications | engine size | change | applied | all serving | downloaded per machine "
        "(builder / other) | pushed found, deleted gone |",
        "|---|---:|---:|---|---:|---:|---|---|",
    ]
    for m in measures:
        downloads = " / ".join(f"{d / 1e3:.1f} kB ({100 * d / max(m.engine_bytes, 1):.2f}%)"
                               for d in sorted(m.downloads))
        lines.append(f"| {m.engine} | {m.publications:,} | {m.engine_bytes / 1e6:.2f} MB | {m.action} of {m.count} "
                     f"| {m.applied:.1f} s | **{m.seconds:.1f} s** | {downloads} | "
                     f"{'yes' if not m.checks else 'NO: ' + '; '.join(m.checks[:2])} |")
    lines += ["", f"Command: `{command_line()}`"]
    return "\n".join(lines)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET, help="the real publications file")
    parser.add_argument("--engine", action="append", help="engines (default: lexical and annoy)")
    parser.add_argument("--size", type=int, default=1000, help="corpus size, a seeded sample (default: 1000)")
    parser.add_argument("--count", type=int, default=10, help="publications pushed (default: 10)")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    if not args.dataset.exists():
        sys.exit(f"the dataset {args.dataset} does not exist: pass --dataset PATH")
    sample = nested_sample(read_publications(args.dataset), args.size + args.count)
    corpus, pushed = sample[: args.size], sample[args.size:]
    measures: list[Measure] = []
    work = Path(tempfile.mkdtemp(prefix="recsys-push-"))
    try:
        for engine in args.engine or ["lexical", "annoy"]:
            with private_vhost() as amqp_url, free_redis_db() as redis_url:
                measures += run(engine, corpus, pushed, f"push-{len(corpus)}", work / engine, amqp_url, redis_url)
        text = table(measures)
        print(text)
        if args.write_docs:
            write_section("push", text)
            print("wrote docs/benchmarks.md (push section)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
