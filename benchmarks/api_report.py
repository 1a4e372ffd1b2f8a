"""The markdown report of ``benchmarks/api.py`` and its place in docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- BEGIN api -->", "<!-- END api -->"

DESCRIPTIONS = {
    "noop": "recsys API (gunicorn gthread 2 x 16, deploy/gunicorn.conf.py) -> RabbitMQ -> "
            "`dramatiq benchmarks.api_noop_worker` (a `recommend` that answers at once) -> Redis: "
            "the API + queue + results overhead",
    "lexical": "recsys API -> `dramatiq recsys_workers` serving the lexical engine",
    "annoy": "recsys API -> `dramatiq recsys_workers` serving the default engine (SentenceTransformer + Annoy)",
    "inline": "reference: Falcon under gunicorn 2 x 16, `POST /echo` answered in the request (no queue)",
    "ref_dramatiq": "reference: the leanest Falcon + Dramatiq round trip (`POST /echo`, BRPOPLPUSH wait)",
    "peer_celery": "reference: the old design, FastAPI + Celery polling its AsyncResult every 10 ms (`POST /echo`)",
}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def combine(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (stack, concurrency): the median of each number over the rounds."""
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["stack"], row["concurrency"]), []).append(row)
    combined = []
    for (stack, concurrency), group in cells.items():
        cpu_names = {name for r in group for name in (r.get("cpu_ms_per_req") or {})}
        combined.append({
            "stack": stack, "concurrency": concurrency, "rounds": len(group),
            "rps_range": (min(r["rps"] for r in group), max(r["rps"] for r in group)),
            **{key: _median([r.get(key) for r in group]) for key in (
                "rps", "p50_ms", "p95_ms", "p99_ms", "machine_busy_cores", "unwatched_cpu_cores")},
            "errors": sum(r["errors"] for r in group),
            "cpu_ms_per_req": {n: _median([(r.get("cpu_ms_per_req") or {}).get(n) for r in group])
                               for n in cpu_names},
        })
    return combined


def _cell(rows: list[dict[str, Any]], stack: str, concurrency: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["stack"] == stack and r["concurrency"] == concurrency), None)


def _goals(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    noop1, noop8 = _cell(rows, "noop", 1), _cell(rows, "noop", 8)
    if noop1 and noop1["p50_ms"] is not None:
        ok = noop1["p50_ms"] < 2.0
        lines.append(f"- Overhead p50 at concurrency 1 (no-op round trip): **{noop1['p50_ms']:.2f} ms** "
                     f"(goal < 2 ms: {'met' if ok else 'NOT met'})")
    for reference, goal in (("peer_celery", 2.5), ("ref_dramatiq", 0.8)):
        other = _cell(rows, reference, 8)
        if noop8 and other and other["rps"]:
            ratio = noop8["rps"] / other["rps"]
            verdict = "met" if ratio >= goal else "NOT met"
            lines.append(f"- No-op throughput at concurrency 8: {noop8['rps']:.0f} req/s = **{ratio:.2f}x** "
                         f"{reference} ({other['rps']:.0f} req/s; goal >= {goal}x: {verdict})")
    lean, celery = _cell(rows, "ref_dramatiq", 8), _cell(rows, "peer_celery", 8)
    if lean and celery and celery["rps"]:
        lines.append(f"- For scale: the leanest Falcon + Dramatiq round trip (ref_dramatiq) made "
                     f"{lean['rps'] / celery['rps']:.2f}x peer_celery at concurrency 8 in this run")
    return lines


def render(rows: list[dict[str, Any]], *, args: argparse.Namespace, load: tuple[Any, Any],
           engines: dict[str, str]) -> str:
    before, after = load
    rows = combine(rows)
    stacks = list(dict.fromkeys(r["stack"] for r in rows))
    rounds = max((r["rounds"] for r in rows), default=1)
    out = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
        f"`python benchmarks/api.py --duration {args.duration:g} --rounds {rounds}{' --demo' if args.demo else ''}` "
        f"on {os.cpu_count()} cores (Python {platform.python_version()}); load average "
        f"{before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f} before and {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} "
        "after: the machine is shared, so read the ratios more than the absolute numbers.",
        "",
        "Every stack ran in this one run, one after the other, under the same load generator "
        "(`../shared/bench/loadgen.py`: C keep-alive connections, closed loop, "
        f"{args.duration:g} s per cell after a warm-up); workers `--processes 2 --threads 4`. "
        + (f"The sequence ran {rounds} times, interleaved; each number is the median over the rounds, "
           "and *req/s range* gives the lowest and highest round." if rounds > 1 else ""),
        "",
    ]
    for stack in stacks:
        extra = f" ({engines[stack]})" if stack in engines else ""
        out.append(f"- **{stack}**: {DESCRIPTIONS.get(stack, stack)}{extra}")
    out += ["", "Goals:", *(_goals(rows) or ["- (not measured: run the noop and reference stacks)"]), ""]
    out += [
        "| stack | C | req/s | req/s range | p50 ms | p95 ms | p99 ms | errors | machine busy (cores) "
        "| others' CPU (cores) | CPU ms/req API | CPU ms/req worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cpu = r.get("cpu_ms_per_req") or {}
        out.append(
            f"| {r['stack']} | {r['concurrency']} | {_fmt(r['rps'])} "
            f"| {r['rps_range'][0]:.0f}-{r['rps_range'][1]:.0f} | {_fmt(r['p50_ms'], 2)} | {_fmt(r['p95_ms'], 2)} "
            f"| {_fmt(r['p99_ms'], 2)} | {r['errors']} | {_fmt(r.get('machine_busy_cores'), 2)} "
            f"| {_fmt(r.get('unwatched_cpu_cores'), 2)} | {_fmt(cpu.get('api'), 2)} | {_fmt(cpu.get('worker'), 2)} |"
        )
    return "\n".join(out)


def write_docs(path: Path, report: str) -> None:
    """Replace the text between the api markers (appended with them when missing)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{report}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + f"\n\n{block}\n"
    path.write_text(text, encoding="utf-8")
