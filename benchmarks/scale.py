"""Scale rehearsal of the default engine: synthetic clustered vectors, no encoding.

    python benchmarks/scale.py [--sizes 125000,250000,500000,1000000] [--increments 10] [--write-docs]

The annoy engine is built through its real code (segments, Annoy indexes past a size,
incremental builds, the merge policy, saving, loading, ranking); only the embedding model
is replaced by a synthetic encoder, so a million sentences are "encoded" in seconds. A
publication has 4 to 12 sentences (8 on average) of one of 200 topics; a sentence's
vector is its topic's centre plus noise (unit length, 384 dimensions), fixed by its text.

For each size (in sentences) it measures: the engine's size on disk, a full build, a 1%
incremental build (a quarter new, a quarter removed, half replaced publications) and the
bytes it changed (files whose sha256 the previous engine lacks: what each machine
downloads), load time, one-sentence and by-id query p50/p99, and the resident memory of a
process that loaded the engine and answered queries (RSS and PSS: the mapped files are
shared by a machine's processes). At the largest size it also measures the merge policy:
``--increments`` more 1% builds (each adds a small segment; the build after the tenth
merges them, as the tiered policy does), and the rewrite of the large segment once a
quarter of it is tombstoned (forced here with one tombstone). Then it extrapolates to
1,000,000 publications / 8,000,000 sentences with the power law fitted between the two
largest sizes (stated as such in the output). ``--write-docs`` writes the table into
docs/benchmarks.md between the ``scale`` markers. Runs in about 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import command_line, percentiles, write_section  # noqa: E402

from recsys.domain import Publication  # noqa: E402
from recsys_engine_annoy import AnnoyEngine  # noqa: E402
from recsys_engine_annoy.encoders import Encoder  # noqa: E402
from recsys_engine_annoy.merge import MergePolicy  # noqa: E402

DIMENSION = 384
TOPICS = 200
NOISE_ROWS = 1 << 16
SENTENCE = re.compile(r"t(\d+) s(\d+)")


class SyntheticEncoder(Encoder):
    """Sentences ``"Topic t<topic> item s<serial>."`` → the topic's centre plus noise fixed
    by the serial (two rows of a noise table combined), unit length."""

    backend = "onnx-int8"
    dimension = DIMENSION

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        centres = rng.standard_normal((TOPICS, DIMENSION)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.noise = (rng.standard_normal((NOISE_ROWS, DIMENSION)) / math.sqrt(DIMENSION)).astype(np.float32)

    def encode(self, sentences: Sequence[str], *, batch_size: int = 32, progress: Any = None) -> np.ndarray:
        topics = np.empty(len(sentences), dtype=np.int64)
        serials = np.empty(len(sentences), dtype=np.int64)
        for i, text in enumerate(sentences):
            found = SENTENCE.search(text)
            topic, serial = (int(found.group(1)), int(found.group(2))) if found else (0, _hash(text))
            topics[i], serials[i] = topic % TOPICS, serial
        a = serials % NOISE_ROWS
        b = (serials * 2654435761 >> 16) % NOISE_ROWS
        vectors = self.centres[topics] + 0.9 * (self.noise[a] + self.noise[b])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        if progress is not None:
            progress(len(sentences))
        return vectors.astype(np.float32)

    def _encode_batch(self, sentences: list[str]) -> np.ndarray:
        return self.encode(sentences)

    def close(self) -> None:
        return None


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=6).digest(), "big")


_ENCODER = SyntheticEncoder()


class ScaleEngine(AnnoyEngine):
    """The annoy engine with the synthetic encoder (building and querying)."""

    def _build_backend(self, model: Any, previous: Any = None) -> str:
        return _ENCODER.backend

    def _build_encoder(self, model: Any, backend: str) -> tuple[Encoder, bool]:
        return _ENCODER, False

    def encoder(self) -> Encoder:
        return _ENCODER


def corpus(sentences: int, seed: int = 1, first_serial: int = 0, first_id: int = 0) -> list[Publication]:
    """Publications of 4..12 synthetic sentences (title: the first), about ``sentences`` in all."""
    rng = random.Random(seed)
    pubs = []
    serial, number, total = first_serial, first_id, 0
    while total < sentences:
        topic = rng.randrange(TOPICS)
        count = rng.randint(4, 12)
        texts = [f"Topic t{topic} item s{serial + i}." for i in range(count)]
        serial += count
        total += count
        pubs.append(Publication(id=f"p{number:08d}", title=texts[0], abstract=" ".join(texts[1:]),
                                label=f"topic-{topic}", year=2000 + number % 26))
        number += 1
    return pubs


def change(pubs: list[Publication], share: float, seed: int) -> list[Publication]:
    """``share`` of ``pubs`` changed: a quarter new, a quarter removed, half replaced."""
    rng = random.Random(seed)
    count = max(4, round(share * len(pubs)))
    picked = set(rng.sample(range(len(pubs)), count - count // 4))
    removed = set(list(picked)[: count // 4])
    serial = 10_000_000_000 + seed * 100_000_000
    out = []
    for i, pub in enumerate(pubs):
        if i in removed:
            continue
        if i in picked:
            topic = int(pub.label.split("-")[1]) if pub.label else 0
            text = f"Topic t{topic} item s{serial}."
            serial += 1
            pub = dataclasses.replace(pub, abstract=f"{pub.abstract} {text}")
        out.append(pub)
    out += corpus(8 * (count // 4), seed=seed + 1000, first_serial=serial, first_id=90_000_000 + seed * 100_000)[
        : count // 4]
    return out


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def file_hashes(folder: Path) -> dict[str, tuple[int, str]]:
    """sha256 and size per file; a file hard-linked from an earlier engine is hashed once."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = (path.stat().st_ino, path.stat().st_dev)
        cached = _HASHES.get(key)
        if cached is None:
            digest = hashlib.sha256()
            with path.open("rb") as fp:
                while chunk := fp.read(1 << 20):
                    digest.update(chunk)
            cached = _HASHES[key] = (path.stat().st_size, digest.hexdigest())
        found[str(path.relative_to(folder))] = cached
    return found


_HASHES: dict[tuple[int, int], tuple[int, str]] = {}


def new_bytes(old: Path, new: Path) -> int:
    held = {sha for _, sha in file_hashes(old).values()}
    return sum(size for size, sha in file_hashes(new).values() if sha not in held)


def build(pubs: list[Publication], folder: Path, previous: Path | None, engine_class: type = ScaleEngine
          ) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    with engine_class() as engine:
        engine.fit(pubs, previous=previous)
        folder.mkdir(parents=True)
        engine.save(folder)
        stats = dict(engine.build_stats)
    return time.perf_counter() - started, stats


def measure_queries(folder: Path, pubs: list[Publication]) -> dict[str, Any]:
    """Load time, query p50/p99 and memory, in a fresh process (so RSS is the engine's)."""
    script = f"""
import json, sys, time, os, random
sys.path[:0] = {[str(ROOT), str(ROOT / 'benchmarks')]!r}
from scale import ScaleEngine, _ENCODER
from recsys.domain import Query
from pathlib import Path
from _common import smaps_summary
ids = json.loads(sys.stdin.read())
started = time.perf_counter()
engine = ScaleEngine.load(Path({str(folder)!r}))
load = time.perf_counter() - started
rng = random.Random(5)
texts = [f"Topic t{{rng.randrange(200)}} item s{{rng.randrange(10**9)}}." for _ in range(300)]
for t in texts[:20]: engine.recommend(Query(text=t, k=10))
def timed(queries):
    out = []
    for q in queries:
        s = time.perf_counter(); engine.recommend(q); out.append(1000 * (time.perf_counter() - s))
    return out
text_ms = timed([Query(text=t, k=10) for t in texts])
id_ms = timed([Query(publication_id=i, k=10) for i in ids])
memory = smaps_summary(os.getpid())
print(json.dumps({{"load_s": load, "text_ms": text_ms, "id_ms": id_ms, "rss_mb": memory.rss, "pss_mb": memory.pss,
                  "private_mb": memory.private}}))
"""
    ids = [p.id for p in random.Random(4).sample(pubs, min(300, len(pubs)))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]))
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(ids), capture_output=True, text=True,
                          env=env, check=False, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(f"the query process failed:\n{done.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    data["text_p50"], data["text_p99"] = percentiles(data.pop("text_ms"))
    data["id_p50"], data["id_p99"] = percentiles(data.pop("id_ms"))
    return data


def fit_power(sizes: Sequence[float], values: Sequence[float], at: float) -> tuple[float, float]:
    """Value at ``at`` from the power law through the last two points, and its exponent."""
    (x0, x1), (y0, y1) = sizes[-2:], values[-2:]
    if min(x0, x1, y0, y1) <= 0:
        return float("nan"), float("nan")
    exponent = math.log(y1 / y0) / math.log(x1 / x0)
    return y1 * (at / x1) ** exponent, exponent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="125000,250000,500000,1000000", help="sentences per engine")
    parser.add_argument("--increments", type=int, default=10, help="1%% builds before the merge at the largest size")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="recsys-scale-"))
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    try:
        for size in sizes:
            pubs = corpus(size)
            base = work / f"{size}-base"
            full_s, stats = build(pubs, base, None)
            changed = change(pubs, 0.01, seed=1)
            inc = work / f"{size}-inc"
            inc_s, inc_stats = build(changed, inc, base)
            shipped = new_bytes(base, inc)
            measured = measure_queries(inc, changed)
            row = {"sentences": int(stats["sentences"]), "publications": len(pubs), "bytes": folder_bytes(base),
                   "full_s": full_s, "inc_s": inc_s, "shipped": shipped, "inc_bytes": folder_bytes(inc),
                   "segments": int(inc_stats["segments"]), **measured}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if size != sizes[-1]:
                shutil.rmtree(base)
                shutil.rmtree(inc)
                continue
            # The merge policy at the largest size: small segments pile up, then merge.
            current, pubs_now = inc, changed
            merge_s = None
            for n in range(args.increments + 1):
                pubs_now = change(pubs_now, 0.01, seed=10 + n)
                nxt = work / f"{size}-inc-{n}"
                seconds, s = build(pubs_now, nxt, current)
                if s["merged_segments"]:
                    merge_s = {"build_s": seconds, "merge_s": s["merge_s"], "merged": int(s["merged_segments"]),
                               "shipped": new_bytes(current, nxt), "bytes": folder_bytes(nxt)}
                if current != inc:
                    shutil.rmtree(current)
                current = nxt
            extra["merge"] = merge_s

            class Rewriting(ScaleEngine):
                merge_policy = MergePolicy(max_deleted_share=0.0)

            rewrite = work / f"{size}-rewrite"
            seconds, s = build(pubs_now[1:], rewrite, current, Rewriting)
            extra["rewrite"] = {"build_s": seconds, "merge_s": s["merge_s"], "shipped": new_bytes(current, rewrite),
                                "bytes": folder_bytes(rewrite)}
            print(json.dumps(extra), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(rows, extra)
    print(text)
    if args.write_docs:
        write_section("scale", text)
        print("wrote docs/benchmarks.md (scale section)")


def report(rows: list[dict[str, Any]], extra: dict[str, Any]) -> str:
    lines = [
        "The default engine (annoy plugin: segments, Annoy indexes past 50,000 publications per segment, exact "
        "scans below) at growing sizes, with a synthetic encoder (no model: vectors of 200 topic clusters, 384 "
        "dimensions, 8 sentences per publication on average), on this 2-core machine. *1% build*: an "
        "incremental build after a 1% change (a quarter new, a quarter removed, half replaced); *shipped*: "
        "the bytes of files whose sha256 the previous engine lacks, which is what each machine downloads. Queries "
        "and memory in a fresh process that loaded the engine (PSS: the mapped files are shared by a machine's "
        "processes).",
        "",
        "| sentences | publications | engine | full build | 1% build | shipped after 1% | load | one sentence "
        "p50 / p99 | by id p50 / p99 | RSS / PSS per process |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sentences']:,} | {r['publications']:,} | {r['bytes'] / 1e6:,.0f} MB | {r['full_s']:.1f} s | "
            f"{r['inc_s']:.1f} s | {r['shipped'] / 1e6:.1f} MB ({100 * r['shipped'] / r['inc_bytes']:.1f}%) | "
            f"{r['load_s']:.2f} s | {r['text_p50']:.1f} / {r['text_p99']:.1f} ms | "
            f"{r['id_p50']:.1f} / {r['id_p99']:.1f} ms | {r['rss_mb']:.0f} / {r['pss_mb']:.0f} MB |")
    merge, rewrite = extra.get("merge"), extra.get("rewrite")
    if merge:
        lines += ["", f"Merge policy at {rows[-1]['sentences']:,} sentences: the build that found more than 10 "
                  f"small segments in its tier ran {merge['merged']} merge(s) in {merge['merge_s']:.1f} s (that "
                  f"build: {merge['build_s']:.1f} s; shipped {merge['shipped'] / 1e6:.1f} MB, "
                  f"{100 * merge['shipped'] / merge['bytes']:.1f}% of the engine)."]
    if rewrite:
        lines += ["", f"Rewriting the large segment (what the policy does once a quarter of it is tombstoned): "
                  f"{rewrite['merge_s']:.1f} s of merging, shipped {rewrite['shipped'] / 1e6:.0f} MB "
                  f"({100 * rewrite['shipped'] / rewrite['bytes']:.0f}% of the engine)."]
    if len(rows) >= 2:
        xs = [float(r["sentences"]) for r in rows]
        target = 8_000_000.0
        lines += ["", "Extrapolated to 1,000,000 publications / 8,000,000 sentences with the power law fitted "
                  f"between the two largest sizes ({rows[-2]['sentences']:,} and {rows[-1]['sentences']:,} "
                  "sentences) — an extrapolation, not a measurement:", ""]
        for label, key, unit, scale in (("engine size", "bytes", "GB", 1e9), ("full build", "full_s", "s", 1),
                                        ("1% build", "inc_s", "s", 1), ("shipped after 1%", "shipped", "MB", 1e6),
                                        ("load", "load_s", "s", 1), ("one sentence p50", "text_p50", "ms", 1),
                                        ("by id p50", "id_p50", "ms", 1), ("PSS per process", "pss_mb", "MB", 1)):
            value, exponent = fit_power(xs, [float(r[key]) for r in rows], target)
            lines.append(f"- {label}: {value / scale:,.1f} {unit} (exponent {exponent:.2f})")
    lines += ["", f"Command: `{command_line()}`"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
