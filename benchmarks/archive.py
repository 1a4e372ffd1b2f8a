"""Archive throughput: pack, verify and unpack a synthetic engine of about 1 GB.

    python benchmarks/archive.py [--size-mb 1024] [--dir /some/disk] [--write-docs]

The engine folder holds what a real one does: a large float32 array (stored), an
index file (stored) and JSON metadata (deflated). The script prints the time and
rate of each step and the process's peak memory, which stays far below the
engine's size because every step streams. It needs about three times the size in
free disk space under ``--dir`` (default: the system's temporary folder) and
removes everything it wrote. ``--write-docs`` writes the table into docs/benchmarks.md
(archive section).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, write_section  # noqa: E402

from recsys.archive import pack, unpack, verify  # noqa: E402
from recsys.engine import EngineMetadata  # noqa: E402

T = TypeVar("T")


def synthetic_engine(folder: Path, size: int) -> EngineMetadata:
    """Write ~``size`` bytes of engine files in 8 MiB pieces (never all in memory)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    index_size = size // 10
    piece = 8 * 1024**2
    for name, total in (("vectors.npy", size - index_size), ("index.ann", index_size)):
        with open(folder / name, "wb") as out:
            left = total
            while left > 0:
                out.write(rng.bytes(min(piece, left)))
                left -= min(piece, left)
    titles = [f"Publication {i} about topic {i % 40}" for i in range(50_000)]
    (folder / "publications.json").write_text(json.dumps({"titles": titles}))
    return EngineMetadata(publications=50_000, sentences=300_000, model="synthetic", dimension=384)


def timed(rows: list[str], label: str, size: int, step: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    print(f"{label:<8} {seconds:6.2f} s  {size / seconds / 1e6:7.0f} MB/s", flush=True)
    rows.append(f"| {label} | {seconds:.1f} s | {size / seconds / 1e6:.0f} MB/s |")
    return result


def report(size: int, rows: list[str], peak_mb: float) -> str:
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return "\n".join(
        [
            f"A synthetic engine of {size / 1e6:,.0f} MB (a float32 array and an index file, both stored "
            "uncompressed, plus JSON metadata), about the size of the full dataset's `annoy` engine. "
            "*verify* is every check the API and the workers run before unpacking (limits, paths, "
            "compression ratios, every sha256); *unpack* verifies again, extracts into a temporary "
            "folder and moves it into place.",
            "",
            "| step | time | rate |",
            "|---|---:|---:|",
            *rows,
            "",
            f"Peak memory of the process: {peak_mb:.0f} MB (every step streams). Measured "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, machine load {load} at the end.",
            "",
            f"Command: `{command_line()}`",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="engine size in MiB (default 1024)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: the temporary folder)")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    size = args.size_mb * 1024**2
    work = Path(tempfile.mkdtemp(prefix="recsys-bench-archive-", dir=args.dir))
    try:
        metadata = synthetic_engine(work / "engine", size)
        archive = work / "engine.zip"
        print(f"synthetic engine: {size / 1e6:.0f} MB in {work}")
        rows: list[str] = []
        timed(rows, "pack", size, lambda: pack(work / "engine", archive, engine="bench", metadata=metadata))
        timed(rows, "verify", size, lambda: verify(archive))
        timed(rows, "unpack", size, lambda: unpack(archive, work / "unpacked"))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory of this process: {peak:.0f} MB")
        if args.write_docs:
            write_section("archive", report(size, rows, peak))
            print("wrote docs/benchmarks.md (archive section)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
