"""``recsys serve`` on its defaults: round-trip latency at concurrency 1, and memory over time.

    python benchmarks/serve.py [--requests 10000] [--data-dir DIR] [--write-docs]

Starts ``recsys serve`` on a free port with nothing configured but its data dir (so:
the default engine, annoy, built from the bundled demo corpus on first start), waits
for its engine, then sends one-sentence ``POST /v1/recommendations`` requests one at a
time on a keep-alive connection (the titles of the demo corpus, in turn, ``k`` = 10),
and samples the server's resident memory (VmRSS) every 250 requests.

It prints (and with ``--write-docs`` writes into docs/benchmarks.md between the
``serve`` markers): latency percentiles, throughput, RSS at the start and the end of
the measured requests, its peak, and the slope of a least-squares line through the
samples (MB per 1,000 requests). Goals (issue 6): p50 under 20 ms, memory flat.

``--data-dir`` reuses a data dir (its engine is served without a new build); by default
a temporary one is made and deleted. ``--result-ttl S`` (repeatable) runs once per value
of RECSYS_RESULT_TTL, on the same data dir (default: one run with the default).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.config import FIELDS  # noqa: E402
from recsys.sources import DemoSource, load_publications  # noqa: E402

BIN = Path(sys.executable).parent
READY = re.compile(r"engine ready after|^  engine: \S+ version ", re.MULTILINE)
BEGIN, END = "<!-- BEGIN serve -->", "<!-- END serve -->"
SAMPLE_EVERY = 250
WARMUP = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_server(data_dir: Path, log: Path, result_ttl: str) -> Server:
    """``recsys serve`` with every setting at its default, except the data dir."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECSYS_")}
    env.update({field.env: field.default for field in FIELDS})  # a ./.env cannot change the defaults
    env.update(RECSYS_DATA_DIR=str(data_dir), RECSYS_RESULT_TTL=result_ttl, HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen([str(BIN / "recsys"), "serve", "--port", str(port)], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Server(process, port, log)


def wait_ready(server: Server, timeout: float) -> float:
    started = time.monotonic()
    while not READY.search(server.output()):
        if server.process.poll() is not None:
            raise SystemExit(f"recsys serve exited with {server.process.returncode}:\n{server.output()[-3000:]}")
        if time.monotonic() - started > timeout:
            raise SystemExit(f"recsys serve had no engine after {timeout:.0f} s:\n{server.output()[-3000:]}")
        time.sleep(0.5)
    return time.monotonic() - started


def post(connection: http.client.HTTPConnection, body: bytes) -> float:
    """One request; returns its latency in ms. Fails on anything but 200."""
    started = time.perf_counter()
    connection.request("POST", "/v1/recommendations", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise SystemExit(f"POST /v1/recommendations answered {response.status}: {data[:500]!r}")
    return elapsed


def measure(server: Server, requests: int) -> dict[str, object]:
    titles = [p.title for p in load_publications(DemoSource())]
    bodies = [json.dumps({"text": title, "k": 10}).encode() for title in titles]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    for i in range(WARMUP):
        post(connection, bodies[i % len(bodies)])
    pid = server.process.pid
    samples: list[tuple[int, float]] = [(0, rss_mb(pid))]
    latencies: list[float] = []
    started = time.monotonic()
    for i in range(requests):
        latencies.append(post(connection, bodies[i % len(bodies)]))
        if (i + 1) % SAMPLE_EVERY == 0:
            samples.append((i + 1, rss_mb(pid)))
    wall = time.monotonic() - started
    connection.close()
    done = [n for n, _ in samples]
    rss = [mb for _, mb in samples]
    return {
        "requests": requests,
        "seconds": round(wall, 1),
        "rps": round(requests / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "rss_start_mb": round(rss[0], 1),
        "rss_end_mb": round(rss[-1], 1),
        "rss_max_mb": round(max(rss), 1),
        "rss_slope_mb_per_1000": round(slope(done, rss) * 1000, 3),
        "rss_second_half_slope_mb_per_1000": round(slope(done[len(done) // 2:], rss[len(rss) // 2:]) * 1000, 3),
    }


def engine_line(output: str) -> str:
    """The engine served: from "engine ready after N s: annoy version ..." (a first
    build) or "  engine: annoy version ..." (one on disk)."""
    found = re.search(r"engine ready after \d+ s: (\S+ version \S+)", output) or re.search(
        r"^  engine: (\S+ version \S+)", output, re.MULTILINE)
    return found.group(1) if found else "?"


DEFAULT_TTL = next(field.default for field in FIELDS if field.attr == "result_ttl")
ROW = ("| {ttl} s | **{p50_ms} ms** | {p95_ms} ms | {p99_ms} ms | {max_ms} ms | {rps} req/s | {rss_start_mb} MB "
       "| {rss_end_mb} MB | {rss_max_mb} MB | {rss_slope_mb_per_1000} | {rss_second_half_slope_mb_per_1000} |")


def report(runs: list[dict[str, object]], engine: str, build_seconds: float | None, requests: int,
           command: str) -> str:
    lines = [
        f"`recsys serve` on its defaults (engine {engine}, the demo corpus), one-sentence "
        f"`POST /v1/recommendations` (a demo-corpus title, k = 10) at concurrency 1 on a keep-alive connection: "
        f"{requests:,} requests after {WARMUP} warm-up requests, RSS of the server process sampled every "
        f"{SAMPLE_EVERY} requests; slopes in MB per 1,000 requests (least squares). One row per "
        "RECSYS_RESULT_TTL (600 s is the default).",
        "",
        "| RECSYS_RESULT_TTL | p50 | p95 | p99 | max | throughput | RSS start | RSS end | RSS peak "
        "| RSS slope | RSS slope, 2nd half |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(ROW.format(**run) for run in runs),
        "",
        "Load average (1 min) at the start of each run: "
        + ", ".join(f"{run['load']} (TTL {run['ttl']} s)" for run in runs) + ".",
    ]
    if build_seconds is not None:
        lines.append(f"First start on an empty data dir to a served engine (build included): {build_seconds:.0f} s. "
                     "The first run's process built that engine itself (what the build loaded, such as torch, "
                     "stays in its memory); later runs restart on the same data dir.")
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines)


def write_docs(text: str) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    content = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    block = f"{BEGIN}\n{text}\n{END}"
    content = pattern.sub(lambda _: block, content) if pattern.search(content) else content.rstrip() + f"\n\n{block}\n"
    path.write_text(content, encoding="utf-8")


def run_once(data_dir: Path, log: Path, ttl: str, requests: int, build_timeout: float) -> tuple[dict[str, object], str,
                                                                                                   float]:
    """Start a server, measure, stop it; returns the result, the engine and the seconds to an engine."""
    server = start_server(data_dir, log, ttl)
    try:
        waited = wait_ready(server, build_timeout)
        load = f"{os.getloadavg()[0]:.2f}"
        print(f"engine ready after {waited:.0f} s; measuring {requests} requests (RECSYS_RESULT_TTL={ttl}) ...",
              file=sys.stderr)
        result = measure(server, requests)
        result.update(ttl=ttl, load=load)
        return result, engine_line(server.output()), waited
    finally:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="measured requests per run (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, help="reuse this data dir (default: a temporary one)")
    parser.add_argument("--result-ttl", action="append", metavar="SECONDS",
                        help=f"one run per value, with this RECSYS_RESULT_TTL (default: one run, {DEFAULT_TTL})")
    parser.add_argument("--build-timeout", type=float, default=900.0, help="seconds allowed for the first build")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    ttls = args.result_ttl or [DEFAULT_TTL]

    temporary = Path(tempfile.mkdtemp(prefix="recsys-serve-bench-"))
    data_dir = args.data_dir if args.data_dir is not None else temporary / "data"
    fresh = not (data_dir / "archives").exists()
    runs, engine, first_wait = [], "?", None
    try:
        for index, ttl in enumerate(ttls):
            result, engine, waited = run_once(data_dir, temporary / f"serve-{index}.log", ttl, args.requests,
                                              args.build_timeout)
            print(json.dumps(result))
            runs.append(result)
            first_wait = waited if first_wait is None else first_wait
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    command = "python benchmarks/serve.py" + (f" --requests {args.requests}" if args.requests != 10_000 else "")
    command += "".join(f" --result-ttl {ttl}" for ttl in args.result_ttl or [])
    text = report(runs, engine, first_wait if fresh else None, args.requests, command)
    print(text)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
