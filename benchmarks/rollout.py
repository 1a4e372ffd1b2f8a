"""Rollout time: from an upload's acceptance to every worker process serving it.

    python benchmarks/rollout.py [--dataset PATH] [--archive PATH ...] [--annoy] [--write-docs]

Starts on this machine, and stops at the end: the real API (``gunicorn
recsys_api.wsgi:app``) on a free port, and two worker pools ``dramatiq recsys_workers
--processes 2 --threads 2``, each with its own data dir (two "machines"), on a
private RabbitMQ vhost (``rabbitmqctl``) and a free Redis database (1..15). Then, for
each engine archive, it uploads the archive with ``PUT /v1/engine/archive`` and
waits until all four worker processes have loaded it. Every worker logs when it
starts serving a new engine; the rollout time of an archive is the last of those
four moments minus the API's ``installed_at`` of the upload (the acceptance).

Archives measured: a lexical engine of the demo corpus; a lexical engine of the real
dataset (``--dataset``, default ``../shared/data/publications/publications.jsonl.gz``
relative to the repository, skipped when absent); and any ``--archive`` given (e.g.
the default engine's archive made by ``benchmarks/engine.py``). ``--annoy`` adds the
largest default engine ``benchmarks/engine.py`` keeps in its cache, packed at the start of
the run (its vectors are reused: nothing is encoded); the pools then share the benchmark's
model cache, as machines that have loaded the model before. ``--write-docs``
writes the table into docs/benchmarks.md between the ``rollout`` markers.
Needs RabbitMQ (``RECSYS_BENCH_AMQP``, default amqp://guest:guest@127.0.0.1:5672),
Redis (``RECSYS_BENCH_REDIS``, default redis://127.0.0.1:6379) and the lexical plugin.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import (  # noqa: E402
    cache_dir,
    command_line,
    engine_benchmark_folder,
    pack_cached_engine,
    write_section,
)

from recsys.build import build_archive  # noqa: E402
from recsys.config import Settings  # noqa: E402
from recsys.registry import Registry  # noqa: E402
from recsys.sources import load_publications, open_source  # noqa: E402

BIN = Path(sys.executable).parent
AMQP = os.environ.get("RECSYS_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672")
REDIS = os.environ.get("RECSYS_BENCH_REDIS", "redis://127.0.0.1:6379")
DATASET = ROOT.parent / "shared" / "data" / "publications" / "publications.jsonl.gz"
TOKEN = "benchmark-token"
POOLS, PROCESSES, THREADS = 2, 2, 2
SERVING = re.compile(r"^\[([\d-]+ [\d:,]+)\] \[PID (\d+)\].*serving engine \S+ version (\S+) \(generation (\d+)\)")
DOWNLOADED = re.compile(r"downloaded and installed generation (\d+) .* in ([\d.]+) s")
LOADED = re.compile(r"loaded engine \S+ version \S+ \(generation (\d+)\) in ([\d.]+)s")
T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
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


@dataclass
class Measure:
    label: str
    publications: int
    size: int
    upload: float
    rollout: float
    first: float
    downloads: list[int]
    install: float
    load: float


def build(label: str, source: str | None, out: Path) -> Path:
    settings = Settings(source=source)
    started = time.perf_counter()
    publications = load_publications(open_source(source, settings))
    archive = build_archive(publications, out, engine="lexical", registry=Registry.discover(), settings=settings)
    print(f"built {label}: {len(publications)} publications, {archive.size / 1e6:.1f} MB "
          f"in {time.perf_counter() - started:.1f} s", flush=True)
    return archive.path


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


def rollout(api_url: str, pools: list[Process], label: str, archive: Path) -> Measure:
    size = archive.stat().st_size
    started = time.time()
    with archive.open("rb") as body:
        response = httpx.put(
            f"{api_url}/v1/engine/archive", content=iter(lambda: body.read(1 << 20), b""), timeout=600,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/zip",
                     "Content-Length": str(size)},
        )
    answered = time.time()
    if response.status_code != 201:
        raise SystemExit(f"the API refused {archive.name}: HTTP {response.status_code} {response.text[:300]}")
    info: dict[str, Any] = response.json()
    generation = int(info["generation"])
    accepted = datetime.fromisoformat(info["installed_at"].replace("Z", "+00:00")).timestamp() \
        if info.get("installed_at") else answered
    times = wait_until(lambda: (t := serving_times(pools, generation)) and len(t) == POOLS * PROCESSES and t,
                       timeout=1800, what=f"every worker process to serve generation {generation}")
    texts = [pool.text() for pool in pools]
    installs = [[float(sec) for gen, sec in DOWNLOADED.findall(text) if int(gen) == generation] for text in texts]
    loads = [float(sec) for text in texts for gen, sec in LOADED.findall(text) if int(gen) == generation]
    return Measure(label, int(info.get("publications", 0)), size, accepted - started,
                   max(times.values()) - accepted, min(times.values()) - accepted,
                   [len(i) for i in installs], max((x for i in installs for x in i), default=0.0),
                   max(loads, default=0.0))


def table(measures: list[Measure]) -> str:
    lines = [
        f"Rollout with {POOLS} pools x {PROCESSES} processes (`dramatiq recsys_workers --processes {PROCESSES} "
        f"--threads {THREADS}`, one data dir each), the real API (`gunicorn recsys_api.wsgi:app`), "
        "RabbitMQ and Redis on this machine. Rollout = from the API's acceptance of the upload "
        "(`installed_at`) to the last of the 4 worker processes serving the new engine "
        "(broadcast, one download per machine, checksum, unpack, load).",
        "",
        "| engine archive | publications | archive | upload (PUT) | download + check + install | load "
        "| first process serving | all 4 serving | downloads per machine |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in measures:
        lines.append(f"| {m.label} | {m.publications:,} | {m.size / 1e6:.1f} MB | {m.upload:.2f} s | "
                     f"{m.install:.1f} s | {m.load:.2f} s | {m.first:.2f} s | **{m.rollout:.2f} s** | "
                     f"{' / '.join(map(str, m.downloads))} |")
    lines += [
        "",
        "Download + check + install and load are the slowest machine's and process's times from the workers' "
        "logs (the machine's second process waits for the first one's install, then loads).",
        "",
        "*Load* opens the unpacked engine in the process: the annoy engine maps its index and vector files "
        "(shared through the page cache) and loads the embedding model at its first query.",
        "",
        f"Command: `{command_line()}`",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET, help="the real publications file")
    parser.add_argument("--archive", type=Path, action="append", default=[], help="another archive to roll out")
    parser.add_argument("--annoy", action="store_true", help="also roll out the engine benchmark's largest engine")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    models = cache_dir() / "models"

    work = Path(tempfile.mkdtemp(prefix="recsys-rollout-"))
    processes: list[Process] = []
    try:
        archives = [("demo corpus, lexical", build("the first engine", None, work / "start.zip"))]
        archives.append(("demo corpus, lexical", build("demo corpus", None, work / "demo.zip")))
        if args.dataset.exists():
            archives.append((f"real dataset ({args.dataset.name}), lexical",
                             build("real dataset", str(args.dataset), work / "real.zip")))
        else:
            print(f"skipping the real dataset: {args.dataset} does not exist")
        archives += [(f"{path.name}", path) for path in args.archive]
        cached = engine_benchmark_folder(cache_dir()) if args.annoy else None
        if args.annoy and cached is None:
            sys.exit("--annoy: benchmarks/engine.py has no engine in its cache; run it first")
        if cached is not None:
            folder, size = cached
            started = time.perf_counter()
            out = pack_cached_engine(folder, size, args.dataset, work / "annoy.zip",
                                     Settings(data_dir=work / "pack", cache_dir=models))
            print(f"packed the cached default engine: {size} publications, {out.stat().st_size / 1e6:.1f} MB "
                  f"in {time.perf_counter() - started:.1f} s", flush=True)
            archives.append((f"real dataset ({args.dataset.name}), annoy", out))

        with private_vhost() as amqp_url, free_redis_db() as redis_url:
            base = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
            base.update(RECSYS_BROKER_URL=amqp_url, RECSYS_RESULTS_URL=redis_url, RECSYS_API_TOKEN=TOKEN,
                        RECSYS_ENGINE="lexical", RECSYS_HEARTBEAT_INTERVAL="1", RECSYS_CATCHUP_INTERVAL="3600",
                        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT),
                        RECSYS_CACHE_DIR=str(models))
            port = free_port()
            api_url = f"http://127.0.0.1:{port}"
            (work / "api").mkdir()
            api_env = dict(base, RECSYS_DATA_DIR=str(work / "api" / "data"),
                           RECSYS_START_ENGINE=str(archives[0][1]))
            processes.append(Process([str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2",
                                      "--timeout", "900", "recsys_api.wsgi:app"], api_env, work / "api" / "api.log"))
            wait_until(lambda: _healthy(api_url), 60, "the API to answer /health")
            pools = []
            for n in range(POOLS):
                folder = work / f"machine-{n}"
                folder.mkdir()
                env = dict(base, RECSYS_API_URL=api_url, RECSYS_DATA_DIR=str(folder / "data"))
                pools.append(Process([str(BIN / "dramatiq"), "recsys_workers", "--processes", str(PROCESSES),
                                      "--threads", str(THREADS)], env, folder / "pool.log"))
            processes += pools
            wait_until(lambda: len(serving_times(pools, 1)) == POOLS * PROCESSES, 120,
                       "the pools to load the first engine")
            measures = []
            for label, path in archives[1:]:
                measure = rollout(api_url, pools, label, path)
                print(f"{label}: {measure.size / 1e6:.1f} MB, upload {measure.upload:.2f} s, install "
                      f"{measure.install:.1f} s, load {measure.load:.2f} s, first serving {measure.first:.2f} s, "
                      f"all serving {measure.rollout:.2f} s, downloads {measure.downloads}", flush=True)
                measures.append(measure)
        text = table(measures)
        print(text)
        if args.write_docs:
            write_section("rollout", text)
            print("wrote docs/benchmarks.md (rollout section)")
    finally:
        for process in reversed(processes):
            process.stop()
        shutil.rmtree(work, ignore_errors=True)


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
