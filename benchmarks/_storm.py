"""Bad-input storms against the API under gunicorn, and its memory after each round.

    python benchmarks/_storm.py [--rounds 7] [--per-round 200] [--clients 32] [--workers 2] [--threads 16]
                                [--kinds KIND ...] [--env NAME=VALUE ...] [--json]

Starts the API as deployed (``gunicorn -c deploy/gunicorn.conf.py recsys_api.wsgi:app``,
Prometheus multiprocess mode on) on a private RabbitMQ vhost, a free Redis database and
a temporary data dir, then sends rounds of requests the API refuses from keep-alive
clients (one persistent connection each): every kind in
:data:`tests.support.storm.BAD_INPUTS` (malformed JSON, wrong types, a huge ``k``,
10 MB bodies with and without ``Content-Length``, BOM and UTF-16, duplicate keys, a bad
charset, a bad ``Prefer``, unknown routes and task ids, bad tokens on a 5 MB archive
upload, ...). Before the storm and after each round it reads the resident set size of
the master and of each worker from /proc. The default of 32 clients keeps all 2 x 16
threads busy.

:func:`run_storm` measures an API that is already running (its master's pid);
:func:`bad_input_storm` starts one, runs the storm and stops it. Both return a dict:
``before`` and ``rounds`` (each ``total_mb``, ``master_mb``, ``workers_mb``, and per
round ``requests`` and ``seconds``), ``growth_pct`` (total RSS, before the storm to
after the last round), ``growth_after_first_round_pct``, ``statuses`` (count of each
``kind:status``), ``wrong_statuses`` (a kind answered with another status) and
``disconnects`` (transport errors: gunicorn closes a connection whose refused body it
could not drain, and the client's next request on it fails).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(HERE), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from api_procs import Proc, amqp_url, free_port, private_redis_db, private_vhost  # noqa: E402

from tests.support.storm import BAD_INPUTS, BadInput, memory, storm_round  # noqa: E402

__all__ = ["api_under_gunicorn", "bad_input_storm", "run_storm"]

BIN = Path(sys.executable).parent
TOKEN = "storm-token"


def run_storm(url: str, master_pid: int, *, rounds: int = 7, per_round: int = 200, clients: int = 32,
              kinds: tuple[BadInput, ...] = BAD_INPUTS, settle: float = 1.0,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Storm an API already running at ``url`` (gunicorn master ``master_pid``) and measure
    its RSS before and after each round (after ``settle`` seconds of quiet)."""
    say = log or (lambda message: None)
    before = memory(master_pid)
    say(f"before: {before['total_mb']} MB ({before})")
    results = []
    statuses: Counter[str] = Counter()
    for number in range(1, rounds + 1):
        started = time.monotonic()
        counts = storm_round(url, per_round, clients, kinds)
        seconds = time.monotonic() - started
        time.sleep(settle)
        row = {"round": number, "requests": sum(counts.values()), "seconds": round(seconds, 1), **memory(master_pid)}
        results.append(row)
        statuses.update(counts)
        say(f"round {number}: {row['requests']} requests in {row['seconds']} s, {row['total_mb']} MB "
            f"(master {row['master_mb']}, workers {row['workers_mb']})")
    first, last, start = results[0]["total_mb"], results[-1]["total_mb"], before["total_mb"]
    return {
        "kinds": [kind.name for kind in kinds],
        "requests": sum(row["requests"] for row in results),
        "clients": clients,
        "before": before,
        "rounds": results,
        "growth_mb": round(last - start, 1),
        "growth_pct": round(100 * (last - start) / start, 1),
        "growth_after_first_round_pct": round(100 * (last - first) / first, 1),
        "statuses": dict(sorted(statuses.items())),
        "wrong_statuses": {key: count for key, count in statuses.items() if "->" in key},
        "disconnects": sum(count for key, count in statuses.items() if ":error" in key),
    }


@contextlib.contextmanager
def api_under_gunicorn(folder: Path, amqp: str, redis: str, *, workers: int, threads: int,
                       extra_env: dict[str, str] | None = None,
                       config: str = "deploy/gunicorn.conf.py") -> Iterator[tuple[str, Proc]]:
    """The API as deployed (``config``: deploy/gunicorn.conf.py), on a free port; yields its URL and process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECSYS_")}
    env.update(
        RECSYS_BROKER_URL=amqp, RECSYS_RESULTS_URL=redis, RECSYS_API_TOKEN=TOKEN, RECSYS_API_URL=url,
        RECSYS_DATA_DIR=str(folder / "api-data"),
        RECSYS_REQUEST_QUEUE="storm.requests", RECSYS_BUILD_QUEUE="storm.builds",
        RECSYS_BROADCAST_EXCHANGE="storm.broadcast",
        PROMETHEUS_MULTIPROC_DIR=str(folder / "prometheus"),
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port} --workers {workers} --threads {threads}",
        PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
        **(extra_env or {}),
    )
    api = Proc("api", [str(BIN / "gunicorn"), "-c", config, "recsys_api.wsgi:app"], env, ROOT, folder / "api.log")
    api.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            if api.popen is not None and api.popen.poll() is not None:
                raise SystemExit(f"gunicorn exited; see {folder / 'api.log'}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the API at {url} did not answer /health in 60 s; see {folder / 'api.log'}")
            time.sleep(0.2)
        # Each worker answers a few requests before "before" is measured (modules imported, pools made).
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(20 * workers):
                client.get("/health")
                client.get("/metrics")
        yield url, api
    finally:
        api.stop()


def bad_input_storm(*, rounds: int = 7, per_round: int = 200, clients: int = 32, workers: int = 2, threads: int = 16,
                    kinds: tuple[BadInput, ...] = BAD_INPUTS, extra_env: dict[str, str] | None = None,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Start the API under gunicorn (private vhost, Redis database and data dir), run
    :func:`run_storm` against it, stop it; the result of :func:`run_storm` plus the setup."""
    with contextlib.ExitStack() as stack:
        vhost = stack.enter_context(private_vhost())
        redis = stack.enter_context(private_redis_db())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsys-storm-")))
        url, api = stack.enter_context(
            api_under_gunicorn(folder, amqp_url(vhost), redis, workers=workers, threads=threads, extra_env=extra_env)
        )
        assert api.popen is not None
        result = run_storm(url, api.popen.pid, rounds=rounds, per_round=per_round, clients=clients, kinds=kinds,
                           log=log)
    result.update(workers=workers, threads=threads, env=dict(extra_env or {}))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--kinds", nargs="+", choices=[kind.name for kind in BAD_INPUTS], metavar="KIND",
                        help="only these kinds of bad input (default: all of them)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra environment variable for gunicorn (e.g. MALLOC_ARENA_MAX=2)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    # Stopped from outside: still stop gunicorn and drop the vhost and the Redis database.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"stopped by signal {signum}"))
    extra = dict(item.split("=", 1) for item in args.env)
    kinds = tuple(kind for kind in BAD_INPUTS if not args.kinds or kind.name in args.kinds)
    result = bad_input_storm(rounds=args.rounds, per_round=args.per_round, clients=args.clients, kinds=kinds,
                             workers=args.workers, threads=args.threads, extra_env=extra,
                             log=None if args.json else lambda message: print(message, flush=True))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['requests']} bad requests ({len(result['kinds'])} kinds, {args.clients} keep-alive clients, "
              f"{args.workers} x {args.threads} threads): RSS {result['before']['total_mb']} -> "
              f"{result['rounds'][-1]['total_mb']} MB ({result['growth_pct']:+} %; "
              f"{result['growth_after_first_round_pct']:+} % after the first round); "
              f"{result['disconnects']} disconnects")
        if result["wrong_statuses"]:
            print(f"wrong statuses: {result['wrong_statuses']}")
    return 0 if not result["wrong_statuses"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
