"""Delta rollout: what a change of the corpus costs, from build start to every worker serving it.

    python benchmarks/rollout.py [--dataset PATH] [--engine lexical] [--engine annoy]
                                 [--size 1000] [--size 0] [--change 0.01] [--change 0.1] [--write-docs]

Starts on this machine, and stops at the end: the real API (``gunicorn recsys_api.wsgi:app``,
2 workers) on a free port and two worker pools ``dramatiq recsys_workers --processes 2
--threads 2``, each with its own data dir (two "machines"), on a private RabbitMQ vhost
(``rabbitmqctl``) and a free Redis database (1..15). The publications source is a JSONL file
the benchmark rewrites between builds.

For each engine and corpus size (``--size 0``: the whole dataset), the first engine is
built here once (kept in the benchmark cache: ``<cache>/rollout/``) and installed by the API
at start (``RECSYS_START_ENGINE``); both machines download it in full. Then, for each change
(a share of the corpus: a quarter new publications, a quarter removed, half replaced by an
edited version with the same id), the benchmark rewrites the source, starts a build with
``POST /v1/engine/builds`` and measures:

* **upload**: the bytes of the thin archive the builder sent (the build task's result);
* **download per machine**: the bytes each machine fetched (its report in ``GET /v1/workers``:
  ``rollouts``); the builder's machine installs its own build and fetches nothing;
* **rebuild**: the build task's seconds (fetch, incremental fit, pack, upload);
* **change → all serving**: from ``POST /v1/engine/builds`` to the last of the 4 worker
  processes serving the new generation (their log lines);
* **checks**: every new publication is recommended for its own title, every replaced one for
  its new text, no removed one ever (asked of the stack, several times, so both pools answer).

The dataset: ``../shared/data/publications/publications.jsonl.gz`` beside the repository
(``--dataset``); the samples are seeded (``nested_sample``). New publications come from a
held-out part of the sample (so the whole-dataset corpus is the dataset minus that part).
``--write-docs`` writes the table into docs/benchmarks.md between the ``rollout`` markers.
Needs RabbitMQ (``RECSYS_BENCH_AMQP``, default amqp://guest:guest@127.0.0.1:5672), Redis
(``RECSYS_BENCH_REDIS``, default redis://127.0.0.1:6379) and the engine plugins.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import cache_dir, command_line, nested_sample, read_publications, write_section  # noqa: E402

from recsys.build import build_archive  # noqa: E402
from recsys.config import Settings  # noqa: E402
from recsys.domain import Publication  # noqa: E402
from recsys.registry import Registry  # noqa: E402
from recsys.text import split_sentences  # noqa: E402

BIN = Path(sys.executable).parent
AMQP = os.environ.get("RECSYS_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672")
REDIS = os.environ.get("RECSYS_BENCH_REDIS", "redis://127.0.0.1:6379")
DATASET = ROOT.parent / "shared" / "data" / "publications" / "publications.jsonl.gz"
TOKEN = "benchmark-token"
POOLS, PROCESSES, THREADS = 2, 2, 2
#: The share of the sample held out at start, for the changes' new publications.
HELD_OUT = 0.03
SERVING = re.compile(r"^\[([\d-]+ [\d:,]+)\] \[PID (\d+)\].*serving engine \S+ version (\S+) \(generation (\d+)\)")
T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_vhost() -> Iterator[str]:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise SystemExit("rabbitmqctl is needed to create a private RabbitMQ vhost")
    vhost = f"/recsys-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run([ctl, "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True, capture_output=True)
    try:
        yield f"{AMQP}/{quote(vhost, safe='')}"
    finally:
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True)


@contextmanager
def free_redis_db() -> Iterator[str]:
    import redis

    claim = f"recsys-bench:{uuid.uuid4().hex[:8]}"
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        if client.set("recsys-test-claim", claim, nx=True, ex=3600):
            client.flushdb()
            client.set("recsys-test-claim", claim, ex=3600)
            try:
                yield f"{REDIS}/{db}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise SystemExit("no free Redis database among 1..15")


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(argv, env=env, cwd=log.parent, stdout=out, stderr=out,
                                          start_new_session=True)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


# -- the corpus and its changes ------------------------------------------------------


@dataclass
class Change:
    """One change of the corpus: what was added, replaced (same id, new text) and removed."""

    share: float
    corpus: list[Publication]
    added: list[Publication] = field(default_factory=list)
    replaced: list[Publication] = field(default_factory=list)
    removed: list[Publication] = field(default_factory=list)


def change_corpus(corpus: list[Publication], held_out: list[Publication], share: float, seed: int) -> Change:
    """``share`` of the corpus changed: a quarter new (from ``held_out``), a quarter removed,
    the rest replaced by an edited version (its last abstract sentence swapped for another
    publication's, the title marked as revised)."""
    rng = random.Random(seed)
    count = max(4, round(share * len(corpus)))
    new = held_out[: count // 4]
    picked = rng.sample(corpus, count - len(new))
    removed, edited = picked[: count // 4], picked[count // 4:]
    donors = rng.sample(corpus, len(edited))
    replaced = []
    for pub, donor in zip(edited, donors, strict=True):
        sentences = split_sentences(pub.abstract) or [pub.abstract]
        other = split_sentences(donor.abstract) or [donor.abstract]
        abstract = " ".join([*sentences[:-1], other[-1]])
        replaced.append(replace(pub, title=f"{pub.title} (revised)", abstract=abstract))
    by_id = {p.id: p for p in replaced}
    gone = {p.id for p in removed}
    changed = [by_id.get(p.id, p) for p in corpus if p.id not in gone] + list(new)
    return Change(share, changed, list(new), replaced, removed)


def write_source(path: Path, publications: Sequence[Publication]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for pub in publications:
            out.write(json.dumps(pub.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def start_archive(engine: str, publications: list[Publication], label: str, previous: Path | None = None) -> Path:
    """The first engine over ``publications``, built once and kept in the benchmark cache
    (``previous``: an engine folder whose vectors the build may reuse, e.g. one
    ``benchmarks/engine.py`` keeps in its cache)."""
    folder = cache_dir() / "rollout"
    folder.mkdir(exist_ok=True)
    out = folder / f"{engine}-{label}.zip"
    if out.exists():
        return out
    settings = Settings(cache_dir=cache_dir() / "models")
    started = time.perf_counter()
    print(f"building the first {engine} engine over {len(publications):,} publications (kept in {out}) ...",
          flush=True)
    build_archive(publications, out, engine=engine, registry=Registry.discover(), settings=settings,
                  previous=previous)
    print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
    return out


# -- the stack -----------------------------------------------------------------------


def serving_times(pools: list[Process], generation: int) -> dict[int, float]:
    """When each worker process (pid) started serving ``generation`` (epoch seconds)."""
    times: dict[int, float] = {}
    for pool in pools:
        for line in pool.text().splitlines():
            found = SERVING.search(line)
            if found and int(found.group(4)) == generation:
                moment = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                times.setdefault(int(found.group(2)), moment)
    return times


@dataclass
class Measure:
    engine: str
    publications: int
    engine_bytes: int
    change: Change
    uploaded: int | None
    downloads: list[int]
    rebuild: float
    serving: float
    checks: list[str]


class Stack:
    def __init__(self, work: Path, engine: str, source: Path, start: Path, amqp_url: str, redis_url: str) -> None:
        self.work = work
        base = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
        # this checkout's code first, then what the caller put on PYTHONPATH (e.g. a worktree's plugins)
        pythonpath = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
        base.update(RECSYS_BROKER_URL=amqp_url, RECSYS_RESULTS_URL=redis_url, RECSYS_API_TOKEN=TOKEN,
                    RECSYS_ENGINE=engine, RECSYS_SOURCE=str(source), RECSYS_HEARTBEAT_INTERVAL="1",
                    RECSYS_CATCHUP_INTERVAL="3600", RECSYS_REQUEST_TIMEOUT="60", HF_HUB_OFFLINE="1",
                    TRANSFORMERS_OFFLINE="1", PYTHONPATH=pythonpath, RECSYS_CACHE_DIR=str(cache_dir() / "models"),
                    RECSYS_WORKER_METRICS_PORT="0")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        (work / "api").mkdir(parents=True)
        self.processes: list[Process] = [Process(
            [str(BIN / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "recsys_api.wsgi:app"],
            dict(base, RECSYS_DATA_DIR=str(work / "api" / "data"), RECSYS_START_ENGINE=str(start),
                 GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port} --workers 2 --timeout 900"),
            work / "api" / "api.log")]
        self.http = httpx.Client(base_url=self.url, timeout=120)
        wait_until(self._healthy, 120, "the API to answer /health")
        self.pools = []
        for n in range(POOLS):
            folder = work / f"machine-{n}"
            folder.mkdir()
            env = dict(base, RECSYS_API_URL=self.url, RECSYS_DATA_DIR=str(folder / "data"))
            self.pools.append(Process([str(BIN / "dramatiq"), "recsys_workers", "--processes", str(PROCESSES),
                                       "--threads", str(THREADS)], env, folder / "pool.log"))
        self.processes += self.pools

    def _healthy(self) -> bool:
        try:
            return self.http.get("/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.http.close()

    def engine(self) -> dict[str, Any]:
        response = self.http.get("/v1/engine")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def build(self) -> tuple[dict[str, Any], float]:
        started = time.time()
        response = self.http.post("/v1/engine/builds", headers={"Authorization": f"Bearer {TOKEN}"})
        if response.status_code != 202:
            raise SystemExit(f"POST /v1/engine/builds: {response.status_code} {response.text[:300]}")
        task_id = response.json()["task_id"]

        def ended() -> dict[str, Any] | None:
            body: dict[str, Any] = self.http.get(f"/v1/tasks/{task_id}").json()
            return None if body["status"] == "pending" else body

        task = wait_until(ended, 1800, f"build task {task_id}", interval=0.2)
        if task["status"] != "succeeded":
            raise SystemExit(f"the build failed: {task}")
        return task["result"], started

    def rollouts(self, generation: int) -> list[dict[str, Any]]:
        records = self.http.get("/v1/workers").json().get("rollouts", [])
        return [r for r in records if r.get("generation") == generation and r.get("state") == "done"]

    def recommend(self, text: str, k: int = 10) -> list[str]:
        response = self.http.post("/v1/recommendations", json={"text": text, "k": k})
        response.raise_for_status()
        return [item["publication_id"] for item in response.json()["recommendations"]]


def check(stack: Stack, change: Change) -> list[str]:
    """What the new generation gets wrong (empty: every check passed); each asked 4 times."""
    problems = []
    for _ in range(4):
        for pub in change.added[:10]:
            if pub.id not in stack.recommend(pub.title):
                problems.append(f"new {pub.id} not recommended for its title")
        for pub in change.replaced[:10]:
            if pub.id not in stack.recommend(pub.abstract):
                problems.append(f"replaced {pub.id} not recommended for its new text")
        for pub in change.removed[:10]:
            if pub.id in stack.recommend(pub.title, k=20):
                problems.append(f"removed {pub.id} still recommended")
    return sorted(set(problems))


def run(engine: str, publications: list[Publication], label: str, shares: Sequence[float], work: Path,
        amqp_url: str, redis_url: str, previous: Path | None = None) -> list[Measure]:
    held = max(4, round(HELD_OUT * len(publications)))
    corpus, held_out = publications[:-held], publications[-held:]
    work.mkdir(parents=True, exist_ok=True)
    source = work / "source.jsonl"
    write_source(source, corpus)
    start = start_archive(engine, corpus, label, previous if engine == "annoy" else None)
    stack = Stack(work / engine, engine, source, start, amqp_url, redis_url)
    measures = []
    try:
        wait_until(lambda: len(serving_times(stack.pools, 1)) == POOLS * PROCESSES, 900,
                   "the pools to load the first engine")
        for n, share in enumerate(shares):
            change = change_corpus(corpus, held_out[held * n // len(shares):], share, seed=n)
            write_source(source, change.corpus)
            result, started = stack.build()
            generation = int(result["engine"]["generation"])
            times = wait_until(lambda g=generation: _all_serving(stack, g), 900,
                               f"every worker process to serve generation {generation}")
            reports = wait_until(lambda g=generation: _reported(stack, g), 60,
                                 f"both machines' rollout reports of generation {generation}")
            current = stack.engine()
            measure = Measure(
                engine, int(current["publications"]), int(current.get("bytes") or 0), change,
                (result.get("uploaded") or {}).get("bytes"), [int(r["bytes_fetched"]) for r in reports],
                float(result.get("seconds") or 0.0), max(times.values()) - started, check(stack, change),
            )
            print(describe(measure), flush=True)
            measures.append(measure)
            corpus = change.corpus
    finally:
        stack.close()
    return measures


def _all_serving(stack: Stack, generation: int) -> dict[int, float] | None:
    times = serving_times(stack.pools, generation)
    return times if len(times) == POOLS * PROCESSES else None


def _reported(stack: Stack, generation: int) -> list[dict[str, Any]] | None:
    reports = stack.rollouts(generation)
    return reports if len(reports) == POOLS else None


def describe(m: Measure) -> str:
    downloads = " / ".join(f"{d / 1e6:.2f} MB ({100 * d / max(m.engine_bytes, 1):.1f}%)" for d in m.downloads)
    uploaded = "n/a" if m.uploaded is None else f"{m.uploaded / 1e6:.2f} MB"
    return (f"{m.engine}, {m.publications:,} publications, {m.engine_bytes / 1e6:.1f} MB engine, "
            f"{100 * m.change.share:g}% changed: upload {uploaded}, download per machine {downloads}, rebuild "
            f"{m.rebuild:.1f} s, change -> all serving {m.serving:.1f} s, checks "
            f"{'ok' if not m.checks else '; '.join(m.checks[:3])}")


def table(measures: list[Measure]) -> str:
    lines = [
        f"Delta rollout with {POOLS} pools x {PROCESSES} processes (`dramatiq recsys_workers --processes "
        f"{PROCESSES} --threads {THREADS}`, one data dir each: two machines), the real API (`gunicorn "
        "recsys_api.wsgi:app`), RabbitMQ and Redis on this 2-core machine. A change of x% of the corpus: a "
        "quarter new publications, a quarter removed, half replaced by an edited version. *Change → all "
        "serving*: from `POST /v1/engine/builds` to the last of the 4 worker processes serving the new "
        "generation (fetch, incremental build, thin upload, broadcast, download of the missing files, load).",
        "",
        "| engine | publications | engine size | change | uploaded | downloaded per machine (builder / other) "
        "| rebuild | change → all serving | new found, removed gone |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for m in measures:
        downloads = " / ".join(f"{d / 1e6:.2f} MB ({100 * d / max(m.engine_bytes, 1):.1f}%)"
                               for d in sorted(m.downloads))
        uploaded = "n/a" if m.uploaded is None else f"{m.uploaded / 1e6:.2f} MB"
        lines.append(f"| {m.engine} | {m.publications:,} | {m.engine_bytes / 1e6:.1f} MB | {100 * m.change.share:g}% "
                     f"| {uploaded} | {downloads} | {m.rebuild:.1f} s | **{m.serving:.1f} s** | "
                     f"{'yes' if not m.checks else 'NO: ' + '; '.join(m.checks[:2])} |")
    lines += ["", f"Command: `{command_line()}`"]
    return "\n".join(lines)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stack on a kill too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET, help="the real publications file")
    parser.add_argument("--engine", action="append", help="engines (default: lexical and annoy)")
    parser.add_argument("--size", action="append", type=int, help="corpus sizes; 0 = the whole dataset "
                        "(default: 1000 and 0)")
    parser.add_argument("--change", action="append", type=float, help="changes as shares (default: 0.01, 0.1)")
    parser.add_argument("--run", action="append", default=[], metavar="ENGINE:SIZE",
                        help="one engine at one size (repeat; instead of --engine x --size)")
    parser.add_argument("--annoy-previous", type=Path, metavar="FOLDER",
                        help="an annoy engine folder whose sentence vectors the first annoy engine reuses (e.g. "
                             "the full-dataset engine benchmarks/engine.py keeps in its cache): no encoding")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    if not args.dataset.exists():
        sys.exit(f"the dataset {args.dataset} does not exist: pass --dataset PATH")
    everything = read_publications(args.dataset)
    measures: list[Measure] = []
    work = Path(tempfile.mkdtemp(prefix="recsys-rollout-"))
    try:
        runs = [(e, int(n)) for e, _, n in (r.partition(":") for r in args.run)] or [
            (engine, size) for engine in args.engine or ["lexical", "annoy"] for size in args.size or [1000, 0]]
        for engine, size in runs:
            sample = nested_sample(everything, size or len(everything))
            label = f"{len(sample)}"
            with private_vhost() as amqp_url, free_redis_db() as redis_url:  # a clean slate per stack
                measures += run(engine, sample, label, args.change or [0.01, 0.1], work / f"{engine}-{label}",
                                amqp_url, redis_url, args.annoy_previous)
        text = table(measures)
        print(text)
        if args.write_docs:
            write_section("rollout", text)
            print("wrote docs/benchmarks.md (rollout section)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
