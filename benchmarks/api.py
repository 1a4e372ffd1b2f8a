"""Round trips of ``POST /v1/recommendations`` against the reference stacks, in one run.

    python benchmarks/api.py [--duration 10] [--concurrency 1 8 32] [--write-docs]
                             [--lexical-archive PATH] [--annoy-archive PATH] [--dataset PATH | --demo]
                             [--stacks noop lexical annoy inline ref_dramatiq peer_celery]

Every stack is measured with the same load generator (``../shared/bench/loadgen.py``:
closed loop, C keep-alive connections, one request at a time each), one after the
other, on a private RabbitMQ vhost and a free Redis database:

* ``noop``: the recsys API (``gunicorn -c deploy/gunicorn.conf.py recsys_api.wsgi:app``,
  2 x 16 threads, Prometheus multiprocess mode on) with ``benchmarks/api_noop_worker.py``,
  whose ``recommend`` answers at once: the API + queue + results overhead;
* ``lexical`` / ``annoy``: the same API with ``dramatiq recsys_workers`` serving that
  engine (installed with RECSYS_START_ENGINE). The lexical engine is built over the real
  dataset (``--dataset``, default ``../shared/data/publications/publications.jsonl.gz``
  from the repository; ``--demo`` or an absent file: the demo corpus). The annoy engine
  is the archive given with ``--annoy-archive``, else packed from the largest engine
  ``benchmarks/engine.py`` keeps in its cache (its sentence vectors are reused: nothing
  is encoded again), else built here over the demo corpus. Archives are cached under
  ``<RECSYS_BENCH_CACHE or ~/.cache/recsys-bench>/api/``;
* ``inline``, ``ref_dramatiq``, ``peer_celery``: the reference stacks of
  ``../shared/bench`` (their ``echo`` endpoint), run with their README's commands from
  their own virtual environment (``BENCH_VENV``, default /tmp/bench-peer-venv, created
  from their requirements.txt when missing). Their code is not copied here.

Workers: ``--processes 2 --threads 4`` everywhere (the reference stacks' defaults).
With ``--rounds N`` the whole sequence runs N times and the report gives each cell's
median, which steadies the numbers on a busy machine.
The machine is shared: the report gives the load average and, per cell, how busy the
machine was and how much CPU others used. ``--write-docs`` writes the report into
docs/benchmarks.md between the ``api`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import cache_dir, engine_benchmark_folder, pack_cached_engine  # noqa: E402
from api_procs import (  # noqa: E402
    Proc,
    amqp_url,
    flush_keeping_claim,
    free_port,
    private_redis_db,
    private_vhost,
    wait_post,
)
from api_report import render, write_docs  # noqa: E402

BIN = Path(sys.executable).parent
BENCH = ROOT.parent / "shared" / "bench"
BENCH_VENV = Path(os.environ.get("BENCH_VENV", "/tmp/bench-peer-venv"))
DATASET = ROOT.parent / "shared" / "data" / "publications" / "publications.jsonl.gz"
BENCH_CACHE = cache_dir()
CACHE = BENCH_CACHE / "api"
PROCESSES, THREADS = "2", "4"
QUERY = {
    "text": "We fine-tune a large language model with reinforcement learning from human feedback and "
            "evaluate how well it follows instructions. The reward model is trained on pairwise preferences.",
    "k": 10,
}
ECHO = {"msg": "hello", "n": 42, "tags": ["a", "b", "c"], "ok": True}
RECSYS_STACKS = ("noop", "lexical", "annoy")
REFERENCE_STACKS = ("inline", "ref_dramatiq", "peer_celery")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- engines ---------------------------------------------------------------------------------


def lexical_archive(args: argparse.Namespace) -> tuple[Path, str]:
    """(archive, description): given, cached, or built now (lexical builds take seconds)."""
    if args.lexical_archive:
        return args.lexical_archive, f"lexical, archive {args.lexical_archive.name}"
    from recsys.build import build_archive
    from recsys.config import Settings
    from recsys.registry import Registry
    from recsys.sources import load_publications, open_source

    dataset = None if args.demo or not args.dataset.exists() else args.dataset
    what = f"lexical over {dataset.name}" if dataset else "lexical over the demo corpus"
    out = CACHE / ("lexical-dataset.zip" if dataset else "lexical-demo.zip")
    if not out.exists():
        log(f"building {what} into {out}")
        publications = load_publications(open_source(str(dataset) if dataset else None))
        build_archive(publications, out, engine="lexical", registry=Registry.discover(),
                      settings=Settings(data_dir=CACHE / "data"))
    return out, what


def annoy_archive(args: argparse.Namespace) -> tuple[Path, str] | None:
    """(archive, description): given; packed from the engine benchmark's cached engine
    (its vectors are reused, nothing is encoded again); else built over the demo corpus."""
    if args.annoy_archive:
        return args.annoy_archive, f"annoy, archive {args.annoy_archive.name}"
    from recsys.build import build_archive
    from recsys.config import Settings
    from recsys.registry import Registry
    from recsys.sources import load_publications, open_source

    registry = Registry.discover()
    if "annoy" not in registry.usable():
        log("the annoy plugin is not installed: skipping the annoy stack (or pass --annoy-archive)")
        return None
    settings = Settings(data_dir=BENCH_CACHE / "data", cache_dir=BENCH_CACHE / "models")
    cached = engine_benchmark_folder(BENCH_CACHE) if args.dataset.exists() and not args.demo else None
    if cached is not None:

        folder, size = cached
        out = CACHE / f"annoy-{folder.parent.name}-{folder.name}.zip"
        what = f"annoy over {size} publications of {args.dataset.name}, from the engine benchmark's cache"
        if not out.exists():
            log(f"packing {what} into {out}")
            pack_cached_engine(folder, size, args.dataset, out, settings)
        return out, what
    out = CACHE / "annoy-demo.zip"
    if not out.exists():
        log(f"building annoy over the demo corpus into {out}")
        build_archive(load_publications(open_source(None)), out, engine="annoy", registry=registry,
                      settings=settings)
    return out, "annoy over the demo corpus (the engine benchmark had not cached a full engine)"


# -- stacks ----------------------------------------------------------------------------------


def checkout_path() -> str:
    """PYTHONPATH for the stacks: this checkout and its plugins, ahead of whatever is installed."""
    return os.pathsep.join([str(ROOT), *(str(p) for p in sorted((ROOT / "plugins").glob("recsys-engine-*")))])


@contextmanager
def recsys_stack(kind: str, run: Path, amqp: str, redis: str, archive: Path | None) -> Iterator[dict[str, Any]]:
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=run))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env.update(
        RECSYS_BROKER_URL=amqp, RECSYS_RESULTS_URL=redis, RECSYS_API_TOKEN="bench",
        RECSYS_API_URL=f"http://127.0.0.1:{port}", RECSYS_DATA_DIR=str(folder / "api"), RECSYS_LOG_LEVEL="warning",
        PROMETHEUS_MULTIPROC_DIR=str(folder / "metrics"), GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}",
        RECSYS_CACHE_DIR=str(BENCH_CACHE / "models"),  # exported models, shared with the engine benchmark
        PYTHONPATH=checkout_path(), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
    )
    if archive is not None:
        env["RECSYS_START_ENGINE"] = str(archive)
    api = Proc("api", [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "recsys_api.wsgi:app"],
               env, ROOT, folder / "api.log")
    module = "benchmarks.api_noop_worker" if kind == "noop" else "recsys_workers"
    queues = ["--queues", "recsys.requests", "recsys.broadcast"] if kind != "noop" else []
    worker_env = dict(env, RECSYS_DATA_DIR=str(folder / "worker"))
    worker = Proc("worker", [str(BIN / "dramatiq"), module, "--processes", PROCESSES, "--threads", THREADS, *queues],
                  worker_env, ROOT, folder / "worker.log")
    with _running(api, worker):
        url = f"http://127.0.0.1:{port}/v1/recommendations"
        wait_post(url, QUERY, 300, [api, worker])
        yield {"url": url, "body": QUERY, "pgids": {"api": api.pgid, "worker": worker.pgid}}


@contextmanager
def reference_stack(kind: str, run: Path, vhost: str, redis: str) -> Iterator[dict[str, Any]]:
    port = free_port()
    venv = BENCH_VENV / "bin"
    env = dict(os.environ, PYTHONPATH=str(BENCH), PYTHONUNBUFFERED="1", OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", BENCH_PIKA_URL=amqp_url(vhost),
               BENCH_KOMBU_URL=amqp_url(vhost), BENCH_REDIS_URL=redis, PEER_POLL_INTERVAL_S="0.01")
    env.pop("GUNICORN_CMD_ARGS", None)
    gunicorn = [str(venv / "gunicorn"), "-k", "gthread", "-w", "2", "--threads", "16", "-b", f"127.0.0.1:{port}",
                "--log-level", "warning"]
    procs: list[Proc] = []
    if kind == "inline":
        procs.append(Proc("api", [*gunicorn, "inline.api:app"], env, BENCH, run / f"{kind}-api.log"))
    elif kind == "ref_dramatiq":
        procs.append(Proc("worker", [str(venv / "dramatiq"), "ref_dramatiq.tasks", "--processes", PROCESSES,
                                     "--threads", THREADS], env, BENCH, run / f"{kind}-worker.log"))
        procs.append(Proc("api", [*gunicorn, "ref_dramatiq.api:app"], env, BENCH, run / f"{kind}-api.log"))
    else:
        procs.append(Proc("worker", [str(venv / "celery"), "-A", "peer_celery.tasks", "worker", "--concurrency", "2",
                                     "--pool", "prefork", "--loglevel", "WARNING"], env, BENCH,
                          run / f"{kind}-worker.log"))
        procs.append(Proc("api", [str(venv / "uvicorn"), "peer_celery.api:app", "--host", "127.0.0.1", "--port",
                                  str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"],
                          env, BENCH, run / f"{kind}-api.log"))
    with _running(*procs):
        url = f"http://127.0.0.1:{port}/echo"
        wait_post(url, ECHO, 120, procs)
        yield {"url": url, "body": ECHO, "pgids": {p.name: p.pgid for p in procs}}


@contextmanager
def _running(*procs: Proc) -> Iterator[None]:
    try:
        for proc in procs:
            proc.start()
        yield
    finally:
        for proc in reversed(procs):
            proc.stop()


def ensure_bench_venv() -> None:
    if (BENCH_VENV / "bin" / "celery").exists():
        return
    log(f"creating {BENCH_VENV} from {BENCH / 'requirements.txt'} (one time)")
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run([str(BENCH_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", str(BENCH / "requirements.txt")], check=True)


# -- measuring -------------------------------------------------------------------------------


def load(target: dict[str, Any], label: str, concurrency: int, duration: float) -> dict[str, Any]:
    argv = [sys.executable, str(BENCH / "loadgen.py"), target["url"], "--body", json.dumps(target["body"]),
            "-c", str(concurrency), "-d", str(duration), "--json", "--label", label,
            "--watch-comm", "rabbitmq=beam.smp", "--watch-comm", "redis=redis-server"]
    for name, pgid in target["pgids"].items():
        argv += ["--watch-pgid", f"{name}={pgid}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
    if not out.stdout.strip():
        raise SystemExit(f"loadgen gave no result for {label} c={concurrency}: {out.stderr[-2000:]}")
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    log(f"{label:<14} c={concurrency:<3} {row['rps']:>8} req/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
        f"errors {row['errors']}  busy {row.get('machine_busy_cores')}")
    return row


def measure(target: dict[str, Any], label: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    load(target, label, 8, args.warmup)  # warm-up: connections, caches, engine loaded in every process
    rows = []
    for concurrency in args.concurrency:
        time.sleep(1)
        row = load(target, label, concurrency, args.duration)
        row["stack"] = label
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", nargs="+", default=[*RECSYS_STACKS, *REFERENCE_STACKS],
                        choices=[*RECSYS_STACKS, *REFERENCE_STACKS])  # each at most once: use --rounds to repeat
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per cell (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per stack (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every stack this many times, interleaved; the report gives medians (default 1)")
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--demo", action="store_true", help="build the lexical engine over the demo corpus")
    parser.add_argument("--lexical-archive", type=Path)
    parser.add_argument("--annoy-archive", type=Path)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    args.stacks = list(dict.fromkeys(args.stacks))

    CACHE.mkdir(parents=True, exist_ok=True)
    engines: dict[str, tuple[Path, str] | None] = {"noop": None}
    if "lexical" in args.stacks:
        engines["lexical"] = lexical_archive(args)
    if "annoy" in args.stacks:
        engines["annoy"] = annoy_archive(args)
        if engines["annoy"] is None:
            args.stacks.remove("annoy")
    if any(s in REFERENCE_STACKS for s in args.stacks):
        ensure_bench_venv()

    load_before = os.getloadavg()
    log(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
        f"on {os.cpu_count()} cores")
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        run = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsys-bench-api-")))
        vhost = stack.enter_context(private_vhost())
        redis = stack.enter_context(private_redis_db())
        for round_ in range(args.rounds):
            for kind in args.stacks:
                flush_keeping_claim(redis)
                if kind in RECSYS_STACKS:
                    engine = engines.get(kind)
                    context = recsys_stack(kind, run, amqp_url(vhost), redis, engine[0] if engine else None)
                else:
                    context = reference_stack(kind, Path(tempfile.mkdtemp(dir=run)), vhost, redis)
                log(f"round {round_ + 1}/{args.rounds}: starting {kind}")
                with context as target:
                    rows += measure(target, kind, args)
    load_after = os.getloadavg()
    described = {kind: engine[1] for kind, engine in engines.items() if engine is not None}
    report = render(rows, args=args, load=(load_before, load_after), engines=described)
    print(report)
    if args.write_docs:
        write_docs(ROOT / "docs" / "benchmarks.md", report)
        log("wrote docs/benchmarks.md (api section)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
