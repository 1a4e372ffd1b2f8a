"""Faults under load: what 8 keep-alive clients see when a dependency fails, and how fast it heals.

    python benchmarks/faults.py [--faults drop redis master] [--rounds 1] [--redis-down 3] [--write-docs]

Starts the distributed stack of ``tests/support/faults.py`` on this machine (gunicorn
``deploy/gunicorn.conf.py`` with 2 processes x 8 threads, two ``dramatiq recsys_workers``
pools of 1 process x 2 threads, the lexical engine over the sample corpus), on a private
RabbitMQ vhost and a free Redis database (1..15), each reached through a TCP proxy of the
run, and 8 clients sending ``POST /v1/recommendations`` back to back, each on one
keep-alive connection. Then, one after the other, on the same stack:

* ``drop``: every AMQP connection (the API's and the workers') is closed at once;
  RabbitMQ itself stays up;
* ``redis``: Redis refuses connections for ``--redis-down`` seconds, then is back;
* ``master``: gunicorn's master is killed (``kill -9``, its workers orphaned, as an OOM
  kill does) and a new one is started a second later on the same port (a supervisor).

Per fault it prints the requests started from 1.5 s before the fault to 3 s after its end,
their statuses, the slowest, the *recovery* (from the fault's end to the answer of the
first request started after it that got a 200) and *last answer* (from the fault's end to
the last answer of the requests started before it). ``--rounds N`` runs the sequence N
times. ``--write-docs`` writes the table into docs/benchmarks.md between the ``faults``
markers. Needs RabbitMQ (``RECSYS_BENCH_AMQP``, default amqp://guest:guest@127.0.0.1:5672),
``rabbitmqctl``, Redis (``RECSYS_BENCH_REDIS``, default redis://127.0.0.1:6379) and the
lexical plugin.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import command_line, write_section  # noqa: E402
from api_procs import amqp_url, private_redis_db, private_vhost  # noqa: E402

from tests.support.faults import (  # noqa: E402
    CLIENTS,
    FaultFigures,
    FaultStack,
    close_rabbitmq_connections,
    kill_api_master,
    redis_outage,
)

FAULTS = ("drop", "redis", "master")


def scenarios(redis_down: float) -> dict[str, Callable[[FaultStack], FaultFigures]]:
    return {
        "drop": close_rabbitmq_connections,
        "redis": lambda stack: redis_outage(stack, seconds=redis_down),
        "master": kill_api_master,
    }


def statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in counts.items()) or "-"


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def notes(figures: FaultFigures) -> str:
    d = figures.details
    if "consumer_restarts" in d:
        delays = "/".join(f"{s:g}" for s in d["restart_delays_s"]) or "-"
        return (f"{d['connections_dropped']} connections closed; {d['consumer_restarts']} consumers reconnected "
                f"after {delays} s; worker CRITICAL lines: {d['worker_critical']}")
    if "results_lost" in d:
        return (f"down {figures.fault_s:.1f} s; tasks that reached a worker meanwhile: "
                f"{d['results_lost'] + d['tasks_skipped']} ({d['results_lost']} results lost, {d['tasks_skipped']} "
                f"skipped unrun); workers' WARNING lines: {d['results_warnings']} on results, "
                f"{d['worker_warnings'] - d['results_warnings']} others (heartbeats); tracebacks: {d['tracebacks']}")
    if "orphans" in d:
        return (f"{d['orphans']} orphaned gunicorn workers; new master bound at its first attempt: "
                f"{'no' if d['connection_in_use'] else 'yes'}")
    return ""


HEADER = ("| fault | round | requests | statuses | during the fault | max latency | recovery | last answer | notes |\n"
          "|---|---:|---:|---|---|---:|---:|---:|---|")


def row(fault: str, number: int, f: FaultFigures) -> str:
    return (f"| {fault} | {number} | {f.requests} | {statuses(f.statuses)} | {statuses(f.during)} | "
            f"**{f.max_latency_s:.2f} s** | {seconds(f.recovery_s)} | {f.settled_s:.2f} s | {notes(f)} |")


def report(rows: list[str], started: str, load: tuple[float, float, float], redis_down: float) -> str:
    return "\n".join([
        f"Measured {started} with `{command_line()}` on {os.cpu_count()} cores (load average "
        f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} at the start; the machine is shared).",
        "",
        f"The stack of `tests/support/faults.py`: gunicorn (`deploy/gunicorn.conf.py`, 2 x 8 threads), two "
        f"`dramatiq recsys_workers` pools (1 process x 2 threads each), the lexical engine; RabbitMQ and Redis "
        f"reached through TCP proxies of the run. {CLIENTS} clients send `POST /v1/recommendations` back to "
        "back, each on one keep-alive connection. Faults: *drop*: every AMQP connection of the API and the "
        f"workers closed at once (RabbitMQ stays up); *redis*: Redis refuses connections for {redis_down:g} s; "
        "*master*: `kill -9` of gunicorn's master alone, a new master started 1 s later on the same port.",
        "",
        "*requests*: started from 1.5 s before the fault to 3 s after its end; *during the fault*: the "
        "statuses of those started and answered while it lasted (error: no HTTP answer, e.g. a refused "
        "connection); "
        "*recovery*: from the fault's end to the answer of the first request started after it that got a 200; "
        "*last answer*: from the fault's end to the last answer of the requests started before it.",
        "",
        HEADER,
        *rows,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--redis-down", type=float, default=3.0, help="seconds Redis stays down (default 3)")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()

    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    run = scenarios(args.redis_down)
    rows = []
    with tempfile.TemporaryDirectory(prefix="recsys-bench-faults-") as tmp, private_vhost() as vhost, \
            private_redis_db() as redis_url:
        with FaultStack(Path(tmp), amqp_url(vhost), redis_url, name="bench-faults") as stack:
            for number in range(1, args.rounds + 1):
                for fault in args.faults:
                    figures = run[fault](stack)
                    rows.append(row(fault, number, figures))
                    print(rows[-1], flush=True)
            if stack.checks:
                print(f"problems clients saw: {stack.checks[:5]} ({len(stack.checks)} in all)")
    text = report(rows, started, load, args.redis_down)
    print()
    print(text)
    if args.write_docs:
        write_section("faults", text)
        print("\nwrote the faults section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
