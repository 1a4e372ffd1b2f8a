"""Helpers shared by benchmark scripts: the dataset, sampling, timing, memory and the docs section.

* :func:`dataset_path` / :func:`read_publications`: the real corpus
  (``../shared/data/publications/publications.jsonl.gz`` beside the repository, or
  ``RECSYS_BENCH_DATA``), read as :class:`recsys.domain.Publication`; :func:`nested_sample`
  takes seeded random subsets where each smaller one lies inside the larger ones.
* :func:`cache_dir`: where benchmarks keep what is slow to make (``~/.cache/recsys-bench``
  unless ``RECSYS_BENCH_CACHE`` says otherwise) — never inside the repository.
* :func:`percentiles`, :func:`peak_rss_mb`, :func:`smaps_summary` (RSS, PSS, shared and
  private memory of a process, optionally only of the mappings of some files).
* :func:`write_section`: replace the text between ``<!-- BEGIN name -->`` and
  ``<!-- END name -->`` in docs/benchmarks.md (the markers are added when missing).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "publications" / "publications.jsonl.gz"
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from recsys.config import Settings  # noqa: E402
from recsys.domain import Publication  # noqa: E402
from recsys.errors import InvalidRecord  # noqa: E402

__all__ = [
    "BENCHMARKS_MD",
    "ROOT",
    "MemoryUse",
    "cache_dir",
    "command_line",
    "dataset_path",
    "nested_sample",
    "peak_rss_mb",
    "percentiles",
    "read_publications",
    "smaps_summary",
    "write_section",
]


def dataset_path(given: str | None = None) -> Path:
    """The corpus file: ``given``, else ``RECSYS_BENCH_DATA``, else the shared dataset.
    Exits with a message saying where it looked when the file is missing."""
    path = Path(given or os.environ.get("RECSYS_BENCH_DATA") or DEFAULT_DATA).expanduser()
    if not path.is_file():
        sys.exit(
            f"the publications dataset is not at {path}: pass --data PATH or set RECSYS_BENCH_DATA "
            "(a JSONL(.gz) file of publications, as in ../shared/data/publications/)"
        )
    return path


def read_publications(path: Path) -> list[Publication]:
    """Every valid record of a JSONL or JSONL.gz file, in file order."""
    opener = gzip.open if path.suffix == ".gz" else open
    publications = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    publications.append(Publication.from_dict(json.loads(line)))
                except (InvalidRecord, ValueError):
                    continue
    return publications


def nested_sample(items: Sequence[Publication], size: int, seed: int = 42) -> list[Publication]:
    """``size`` items picked at random with ``seed``; for one seed, a smaller sample is
    always the start of a larger one (so caches and comparisons nest)."""
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order[: min(size, len(items))]]


def cache_dir(given: str | None = None) -> Path:
    """The benchmarks' cache folder (created)."""
    path = Path(given or os.environ.get("RECSYS_BENCH_CACHE") or Path.home() / ".cache" / "recsys-bench")
    path = path.expanduser().resolve()
    if path == ROOT or ROOT in path.parents:
        sys.exit(f"the benchmark cache {path} lies inside the repository; choose a folder outside it")
    path.mkdir(parents=True, exist_ok=True)
    return path


def command_line() -> str:
    """This process's command line, as a reader would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT).as_posix() if ROOT in script.parents else script.name
    return "python " + " ".join([shown, *map(shlex.quote, sys.argv[1:])])


def percentiles(samples_ms: Iterable[float], points: Sequence[float] = (50, 99)) -> list[float]:
    values = np.asarray(list(samples_ms), dtype=np.float64)
    return [float(np.percentile(values, p)) for p in points] if len(values) else [float("nan")] * len(points)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): VmHWM, which (unlike ru_maxrss,
    kept across exec) starts afresh in a child process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class MemoryUse:
    """Memory of one process from /proc/<pid>/smaps, in MB (``files``: only those mappings)."""

    rss: float
    pss: float
    shared: float
    private: float


def smaps_summary(pid: int, only_under: Path | None = None) -> MemoryUse:
    """Sum RSS, PSS, shared and private memory over a process's mappings, or over the
    mappings of files under ``only_under``."""
    totals = {"Rss": 0, "Pss": 0, "Shared_Clean": 0, "Shared_Dirty": 0, "Private_Clean": 0, "Private_Dirty": 0}
    header = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
    counting = only_under is None
    prefix = str(only_under) + os.sep if only_under is not None else ""
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if header.match(line):
                if only_under is not None:
                    parts = line.split(None, 5)
                    counting = len(parts) == 6 and parts[5].strip().startswith(prefix)
                continue
            key, _, rest = line.partition(":")
            if counting and key in totals:
                totals[key] += int(rest.split()[0])
    mb = {k: v / 1024 for k, v in totals.items()}
    return MemoryUse(
        rss=mb["Rss"], pss=mb["Pss"], shared=mb["Shared_Clean"] + mb["Shared_Dirty"],
        private=mb["Private_Clean"] + mb["Private_Dirty"],
    )


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Put ``body`` between the ``name`` markers of docs/benchmarks.md (appended when missing)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def engine_benchmark_folder(cache: Path) -> tuple[Path, int] | None:
    """The largest annoy engine ``benchmarks/engine.py`` built and kept in ``cache``
    (``<cache>/engine/<data>-<model>/<backend>-<size>``), with its size, or None."""
    found = []
    for folder in (cache / "engine").glob("*/*-*"):
        backend, _, size = folder.name.rpartition("-")
        if folder.is_dir() and size.isdigit() and backend in ("torch", "onnx"):
            found.append((int(size), folder))
    return (max(found)[1], max(found)[0]) if found else None


def pack_cached_engine(folder: Path, size: int, dataset: Path, out: Path, settings: Settings) -> Path:
    """Pack an archive of the annoy engine the engine benchmark cached in ``folder`` (built
    over the first ``size`` of the seeded sample of ``dataset``): the engine is built again
    with ``previous=folder``, so every sentence vector is reused and nothing is encoded."""
    from recsys.build import build_archive
    from recsys.registry import Registry

    publications = nested_sample(read_publications(dataset), size)
    build_archive(publications, out, engine="annoy", registry=Registry.discover(), settings=settings, previous=folder)
    return out
