"""Checks behind the conformance suite, usable without pytest.

Each ``*_problems`` function returns a list of human-readable problems (empty when
all is well), so that a failing test says everything that is wrong at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.config import Settings
from recsys.domain import Publication, Query, Recommendation
from recsys.engine import Engine
from recsys.errors import RecsysError

__all__ = [
    "Answer",
    "FileHashes",
    "answer",
    "changed_files",
    "diff_answers",
    "diff_rankings",
    "engine_reference",
    "file_hashes",
    "looks_like_pickle",
    "normalise",
    "plain_file_problems",
    "ranking_problems",
    "run_in_fresh_process",
    "settings_environ",
    "sentence_text",
]

#: What :func:`answer` gives for one query: recommendations as dicts, or an error code.
Answer = dict[str, Any]

#: What :func:`file_hashes` gives: each file's relative path -> (sha256 hex, size in bytes).
FileHashes = dict[str, tuple[str, int]]

_RESERVED_NAMES = frozenset({"manifest.json"})


def normalise(text: str) -> str:
    """Whitespace collapsed to single spaces, for "does this sentence come from that text"."""
    return " ".join(text.split())


def sentence_text(parts: Iterable[str]) -> str:
    """Join titles or abstracts into one text where each part ends a sentence."""
    return " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in (normalise(p) for p in parts) if p)


# -- saved files ----------------------------------------------------------------


def looks_like_pickle(head: bytes) -> bool:
    """Whether bytes start like a pickle of protocol 2 or later (PROTO opcode 0x80)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def plain_file_problems(folder: Path) -> list[str]:
    """What in a saved engine folder is not a plain, safe file.

    Checks: at least one file; no link and nothing but regular files and folders; no
    ``manifest.json`` at the top (the archive writes its own); no file that starts
    like a pickle; every ``.npy``/``.npz`` loads with ``allow_pickle=False``; every
    ``.json`` parses.
    """
    problems: list[str] = []
    files = 0
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            problems.append(f"{name} is a symbolic link; save plain files only")
            continue
        if path.is_dir():
            continue
        if not path.is_file():
            problems.append(f"{name} is not a regular file")
            continue
        files += 1
        if name in _RESERVED_NAMES:
            problems.append(f"{name} is reserved for the archive; give the engine's file another name")
        with path.open("rb") as handle:
            head = handle.read(2)
        if looks_like_pickle(head):
            problems.append(f"{name} starts like a pickle; never pickle (use .npy, JSON or the index's format)")
        problems.extend(_content_problems(path, name))
    if files == 0:
        problems.append(f"save() wrote no file into {folder}")
    return problems


def _content_problems(path: Path, name: str) -> list[str]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            np.load(path, allow_pickle=False, mmap_mode="r")
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                for key in archive.files:
                    archive[key]
        elif suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        return [f"{name} does not load as plain {suffix[1:]} ({type(exc).__name__}: {exc})"]
    return []


def file_hashes(folder: Path) -> FileHashes:
    """Every regular file under ``folder``: relative path -> (sha256 hex, size)."""
    found: FileHashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            found[path.relative_to(folder).as_posix()] = (digest.hexdigest(), path.stat().st_size)
    return found


def changed_files(before: Mapping[str, tuple[str, int]], after: Mapping[str, tuple[str, int]]) -> list[str]:
    """Paths of ``after`` that are new or changed: their path and sha256 are not in ``before``."""
    return [name for name, (sha256, _) in after.items() if before.get(name, ("",))[0] != sha256]


# -- recommendations --------------------------------------------------------------


def answer(engine: Engine, query: Query) -> Answer:
    """The engine's answer as plain JSON values: ``{"recommendations": [...]}`` or ``{"error": code}``."""
    try:
        return {"recommendations": [r.to_dict() for r in engine.recommend(query)]}
    except RecsysError as exc:
        return {"error": exc.code}


def diff_answers(expected: Sequence[Answer], actual: Sequence[Answer], *, tolerance: float = 1e-5) -> list[str]:
    """Differences between two lists of answers: ids, titles and evidence exactly,
    scores within ``tolerance``."""
    if len(expected) != len(actual):
        return [f"{len(expected)} answers expected, got {len(actual)}"]
    problems: list[str] = []
    for number, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if _without_scores(want) != _without_scores(got):
            problems.append(f"query #{number}: expected {_summary(want)}, got {_summary(got)}")
        elif not all(math.isclose(a, b, rel_tol=0, abs_tol=tolerance) for a, b in zip(
            _scores(want), _scores(got), strict=True
        )):
            problems.append(f"query #{number}: scores differ: {_scores(want)} vs {_scores(got)}")
    return problems


def diff_rankings(expected: Sequence[Answer], actual: Sequence[Answer], *, tolerance: float = 1e-5) -> list[str]:
    """Differences between two lists of answers as rankings: the same error code, or
    the same publication ids in the same order with scores within ``tolerance``.

    Publications whose expected scores tie (within ``tolerance``) may come in any order
    among themselves, but the set of each run of ties must match, also at the cut of
    ``k``: break exact ties by something that does not depend on how the engine is
    stored (the publication id, say). Titles and evidence are not compared.
    """
    if len(expected) != len(actual):
        return [f"{len(expected)} answers expected, got {len(actual)}"]
    problems: list[str] = []
    for number, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if "error" in want or "error" in got:
            if want.get("error") != got.get("error"):
                problems.append(f"query #{number}: expected {_summary(want)}, got {_summary(got)}")
            continue
        want_ids = [r["publication_id"] for r in want["recommendations"]]
        got_ids = [r["publication_id"] for r in got["recommendations"]]
        want_scores = [float(r["score"]) for r in want["recommendations"]]
        got_scores = [float(r["score"]) for r in got["recommendations"]]
        if len(want_ids) != len(got_ids) or any(
            not math.isclose(a, b, rel_tol=0, abs_tol=tolerance) for a, b in zip(want_scores, got_scores, strict=True)
        ):
            problems.append(f"query #{number}: expected {_summary(want)}, got {_summary(got)}")
            continue
        start = 0
        while start < len(want_ids):
            end = start + 1
            while end < len(want_ids) and want_scores[start] - want_scores[end] <= tolerance:
                end += 1
            if set(want_ids[start:end]) != set(got_ids[start:end]):
                problems.append(f"query #{number}: expected {_summary(want)}, got {_summary(got)}")
                break
            start = end
    return problems


def _without_scores(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_scores(v) for k, v in value.items() if k != "score"}
    if isinstance(value, list):
        return [_without_scores(v) for v in value]
    return value


def _scores(value: Any) -> list[float]:
    if isinstance(value, dict):
        own = [float(value["score"])] if "score" in value else []
        return own + [s for k, v in value.items() if k != "score" for s in _scores(v)]
    if isinstance(value, list):
        return [s for v in value for s in _scores(v)]
    return []


def _summary(value: Answer) -> str:
    if "error" in value:
        return f"error {value['error']!r}"
    return "[" + ", ".join(f"{r['publication_id']}:{r['score']:.4f}" for r in value["recommendations"]) + "]"


def ranking_problems(
    recommendations: Sequence[Recommendation],
    query: Query,
    corpus: Mapping[str, Publication],
    *,
    require_evidence: bool = True,
) -> list[str]:
    """What is wrong with one query's recommendations, judged against the corpus.

    At most ``k``; each id once, known, never the query's own; title as stored;
    scores finite and in descending order; every filter of the query honoured; each
    piece of evidence pairs a sentence of the query (of the query's publication for
    a by-id query) with a sentence of the recommended publication.
    """
    problems: list[str] = []
    if len(recommendations) > query.k:
        problems.append(f"{len(recommendations)} recommendations for k={query.k}")
    if query.text is not None:
        query_text = normalise(query.text)
    else:
        own = corpus.get(query.publication_id or "")
        query_text = normalise(own.body) if own is not None else ""
    seen: set[str] = set()
    previous = math.inf
    for rank, rec in enumerate(recommendations, start=1):
        where = f"#{rank} {rec.publication_id!r}"
        pub = corpus.get(rec.publication_id)
        if pub is None:
            problems.append(f"{where} is not in the corpus")
            continue
        if rec.publication_id in seen:
            problems.append(f"{where} is recommended twice")
        seen.add(rec.publication_id)
        if rec.title != pub.title:
            problems.append(f"{where} has title {rec.title!r}, the corpus says {pub.title!r}")
        if not math.isfinite(rec.score):
            problems.append(f"{where} has score {rec.score}")
        elif rec.score > previous + 1e-9:
            problems.append(f"{where} scores {rec.score} after a lower score {previous}: not sorted")
        previous = rec.score
        if not query.accepts(pub.id, pub.label, pub.year):
            problems.append(f"{where} (label {pub.label!r}, year {pub.year}) breaks the query's filters")
        problems.extend(_evidence_problems(rec, pub, query_text, where, require_evidence))
    return problems


def _evidence_problems(
    rec: Recommendation, pub: Publication, query_text: str, where: str, required: bool
) -> list[str]:
    problems: list[str] = []
    if required and not rec.evidence:
        problems.append(f"{where} has no evidence")
    body = normalise(pub.body)
    for ev in rec.evidence:
        if not math.isfinite(ev.score):
            problems.append(f"{where} has evidence with score {ev.score}")
        if not ev.query_sentence.strip() or normalise(ev.query_sentence) not in query_text:
            problems.append(f"{where}: evidence query sentence {ev.query_sentence[:80]!r} is not from the query")
        if not ev.sentence.strip() or normalise(ev.sentence) not in body:
            problems.append(f"{where}: evidence sentence {ev.sentence[:80]!r} is not from that publication")
    return problems


# -- a fresh process ----------------------------------------------------------------


def engine_reference(engine_class: type[Engine]) -> str:
    """``module:QualName`` of an engine class, as an entry point names it."""
    return f"{engine_class.__module__}:{engine_class.__qualname__}"


def settings_environ(settings: Settings) -> dict[str, str]:
    """``RECSYS_*`` variables that make :meth:`Settings.from_env` rebuild ``settings``
    (the plugins' settings included)."""
    return settings.environ()


def run_in_fresh_process(
    engine_class: type[Engine],
    folder: Path,
    settings: Settings,
    queries: Sequence[Query],
    *,
    timeout: float = 600.0,
) -> list[Answer]:
    """Load ``folder`` with ``engine_class`` in a new Python process and answer ``queries``
    there (see :mod:`recsys.testing.fresh`). Raises AssertionError with the child's
    error output when it fails."""
    environ = {**os.environ, **settings_environ(settings)}
    command = [sys.executable, "-m", "recsys.testing.fresh", engine_reference(engine_class), str(folder)]
    payload = json.dumps([q.to_dict() for q in queries])
    try:
        done = subprocess.run(
            command, input=payload, capture_output=True, text=True, timeout=timeout, env=environ, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"loading the engine in a fresh process took over {timeout:.0f}s") from exc
    if done.returncode != 0:
        raise AssertionError(
            f"the fresh process exited with {done.returncode}:\n{done.stderr[-4000:]}"
        )
    answers: list[Answer] = json.loads(done.stdout)
    return answers
