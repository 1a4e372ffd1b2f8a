"""Commands that work without any service: engines, settings, build, verify, recommend."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recsys.config import FIELDS, Settings
from recsys.errors import ConfigError, InvalidQuery, RecsysError
from recsys.manifest import FileEntry, Manifest
from recsys.registry import Registry

logger = logging.getLogger("recsys.cli")

STAGE_UNITS = {"fetch": "records", "split": "publications", "encode": "sentences", "index": "items"}


def add_commands(commands: Any) -> None:
    engines = commands.add_parser("engines", help="list installed engine plugins, with load errors")
    engines.add_argument("--json", action="store_true", help="print JSON")
    engines.set_defaults(handler=cmd_engines)

    settings = commands.add_parser(
        "settings", help="show the effective RECSYS_ settings, the core's then each plugin's (secrets hidden)"
    )
    settings.add_argument("--json", action="store_true", help="print JSON")
    settings.set_defaults(handler=cmd_settings)

    build = commands.add_parser("build", help="build an engine archive from a publications source")
    build.add_argument("--source", help="JSON/JSONL(.gz) file or http(s):// URL (default: RECSYS_SOURCE, else demo)")
    build.add_argument("--out", required=True, type=Path, help="archive to write (ARCHIVE.zip)")
    build.add_argument("--engine", help="engine plugin (default: RECSYS_ENGINE)")
    build.add_argument("--previous", type=Path, metavar="ARCHIVE.zip",
                       help="the engine in service: an incremental build reuses its unchanged segments and vectors")
    build.add_argument("--thin", action="store_true",
                       help="with --previous: leave out of the archive the files the previous one has "
                            "(a thin archive for PUT /v1/engine/archive to an API that holds the previous version)")
    build.set_defaults(handler=cmd_build)

    verify = commands.add_parser("verify", help="check an engine archive; print its manifest")
    verify.add_argument("archive", type=Path)
    verify.add_argument("--json", action="store_true", help="print the manifest as JSON (default: a summary)")
    verify.add_argument("--thin", action="store_true",
                        help="accept a thin archive (files listed but not carried are reported, not checked)")
    verify.set_defaults(handler=cmd_verify)

    from recsys.cli.evaluate import add_command as add_evaluate

    add_evaluate(commands)

    rec = commands.add_parser(
        "recommend",
        help="recommend from an archive, locally, or from a running API",
        description="Load the engine once and answer every query: each TEXT argument, each --publication-id, "
                    "the --like-id/--like-text examples (one query), or each line of --batch. With --api, "
                    "the queries go to that API (POST /v1/recommendations, or /batch for --batch).",
    )
    where = rec.add_mutually_exclusive_group(required=True)
    where.add_argument("--archive", type=Path, help="engine archive (ARCHIVE.zip)")
    where.add_argument("--api", metavar="URL", help="a running API, e.g. http://127.0.0.1:8000 (recsys serve)")
    rec.add_argument("texts", nargs="*", metavar="TEXT", help="query texts (one query each)")
    rec.add_argument("--publication-id", action="append", default=[], metavar="ID", help="query by stored id")
    rec.add_argument("-k", type=int, default=10, help="recommendations per query (1-100, default: 10)")
    rec.add_argument("--label", help="only publications with this label")
    rec.add_argument("--year-min", type=int, help="only publications from this year on")
    rec.add_argument("--year-max", type=int, help="only publications up to this year")
    rec.add_argument("--exclude", action="append", default=[], metavar="ID", help="never recommend this id")
    rec.add_argument("--lexical-weight", type=float, metavar="W",
                     help="share of the lexical signal in a hybrid engine's score, 0-1 (default: the engine's)")
    rec.add_argument("--like-id", action="append", default=[], metavar="ID",
                     help="more like this stored publication (repeatable; with --like-text: one query)")
    rec.add_argument("--like-text", action="append", default=[], metavar="TEXT", help="more like this text")
    rec.add_argument("--unlike-id", action="append", default=[], metavar="ID",
                     help="less like this stored publication (repeatable; applies to every query)")
    rec.add_argument("--unlike-text", action="append", default=[], metavar="TEXT", help="less like this text")
    rec.add_argument("--diversity", type=float, metavar="D", help="0-1: maximal marginal relevance (default: 0)")
    rec.add_argument("--min-score", type=float, metavar="S", help="drop recommendations scoring below S")
    rec.add_argument("--offset", type=int, metavar="N", help="skip the first N of the ranking (0-1000)")
    rec.add_argument("--batch", type=Path, metavar="FILE.jsonl",
                     help="one request body (JSON, as POST /v1/recommendations takes) per line, answered together")
    rec.add_argument("--json", action="store_true", help="one compact JSON object per query on stdout")
    rec.set_defaults(handler=cmd_recommend)


def load_settings() -> Settings:
    return Settings.from_env()


def _print_json(data: Any, *, compact: bool = False) -> None:
    if compact:
        print(json.dumps(data, ensure_ascii=False, separators=(",", ":")), flush=True)
    else:
        print(json.dumps(data, ensure_ascii=False, indent=2), flush=True)


def cmd_engines(args: argparse.Namespace) -> int:
    registry = Registry.discover(load=True)
    records = registry.records()
    if args.json:
        _print_json([r.to_dict() for r in records])
        return 0
    if not records:
        print("no engine plugins installed (install one: pip install -e plugins/recsys-engine-lexical)")
        return 0
    width = max(len(r.name) for r in records)
    for r in records:
        where = f"{r.distribution or '?'} {r.version or ''}".strip()
        line = f"{r.name:<{width}}  {r.status:<10}  {where}"
        if r.error:
            line += f"\n{'':<{width}}  error: {r.error}"
        print(line)
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    settings = load_settings()
    core = settings.redacted()
    plugins = {plugin.name: (plugin, settings.redacted_plugin(plugin)) for plugin in settings.plugins}
    if args.json:
        _print_json({"core": core, "plugins": {name: shown for name, (_, shown) in plugins.items()}})
        return 0
    for field in FIELDS:
        print(f"{field.env}={_env_value(core[field.env])}")
    for name, (plugin, shown) in plugins.items():
        print(f"\n# plugin {name}" + (f": {plugin.title}" if plugin.title else ""))
        for field in plugin.fields:
            aliases = f"  # also read as {', '.join(field.aliases)}" if field.aliases else ""
            print(f"{field.env}={_env_value(shown[field.env])}{aliases}")
    return 0


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cmd_build(args: argparse.Namespace) -> int:
    from recsys.archive import Limits, thin_copy, unpack
    from recsys.build import build_archive
    from recsys.engine import LogProgress
    from recsys.sources import load_publications, open_source

    settings = load_settings()
    if args.thin and args.previous is None:
        raise ConfigError("--thin needs --previous ARCHIVE.zip: the version whose files the thin archive leaves out")
    engine = args.engine or settings.engine
    registry = Registry.discover(load=True)
    registry.get(engine)  # fail before fetching anything when the engine is missing
    progress = LogProgress(logger, units=STAGE_UNITS)
    limits = Limits.from_settings(settings)
    with tempfile.TemporaryDirectory(prefix=".recsys-build-", dir=Path(args.out).resolve().parent) as tmp:
        previous = None
        if args.previous is not None:
            previous = Path(tmp) / "previous"
            old = unpack(args.previous, previous, limits, engines=registry.usable())
            logger.info("previous engine: %s version %s (%d publications)", old.engine, old.version, old.publications)
            if old.engine != engine:
                logger.warning("the previous engine is %r, not %r: a full build", old.engine, engine)
        source = open_source(args.source if args.source is not None else settings.source, settings)
        started = time.monotonic()
        logger.info("reading publications from %s", source.description)
        publications = load_publications(source, progress)
        logger.info("building engine %r over %d publications", engine, len(publications))
        full = Path(tmp) / "full.zip" if args.thin else args.out
        built = build_archive(
            publications, full, engine=engine, registry=registry, settings=settings, progress=progress,
            previous=previous,
        )
        reused = _reused(built.manifest, previous)
        if args.thin:
            built = thin_copy(built, args.out, {entry.sha256 for entry in reused}, limits)
    manifest = built.manifest
    print(
        f"wrote {args.out} ({built.size / 1e6:.1f} MB, sha256 {built.sha256[:12]}…): engine {manifest.engine} "
        f"version {manifest.version}, {manifest.publications} publications, {manifest.sentences} sentences, "
        f"in {time.monotonic() - started:.1f} s"
    )
    if previous is not None:
        kept = sum(entry.size for entry in reused)
        total = manifest.total_size or 1
        print(f"  unchanged files: {len(reused)} of {len(manifest.files)}, {kept / 1e6:.1f} of {total / 1e6:.1f} MB "
              f"({100.0 * kept / total:.0f}%); new or changed: {(total - kept) / 1e6:.1f} MB "
              f"({100.0 * (total - kept) / total:.0f}%){'; left out of the thin archive' if args.thin else ''}")
    return 0


def _reused(manifest: Manifest, previous: Path | None) -> list[FileEntry]:
    """The entries of ``manifest`` whose bytes the previous engine folder already has."""
    if previous is None:
        return []
    from recsys.archive import read_manifest

    old = {entry.sha256 for entry in read_manifest(previous).files}
    return [entry for entry in manifest.files if entry.sha256 in old]


def cmd_verify(args: argparse.Namespace) -> int:
    from recsys.archive import Limits, verify

    settings = load_settings()
    registry = Registry.discover(load=False)
    verified = verify(args.archive, Limits.from_settings(settings), engines=registry.usable(),
                      have=(lambda entry: True) if args.thin else None)
    manifest = verified.manifest
    if args.json:
        _print_json(dict(manifest.to_dict(), sha256=verified.sha256, size=verified.size,
                         manifest_sha256=verified.manifest_sha256, carried=sorted(verified.members)))
        return 0
    print(f"{args.archive}: OK" + (" (thin)" if verified.thin else ""))
    print(f"  engine      {manifest.engine} {manifest.engine_version or ''}".rstrip())
    print(f"  version     {manifest.version} (created {manifest.created_at})")
    print(f"  identity    manifest sha256 {verified.manifest_sha256}")
    print(f"  contents    {manifest.publications} publications, {manifest.sentences} sentences")
    if manifest.model:
        print(f"  model       {manifest.model} (dimension {manifest.dimension})")
    print(f"  files       {len(manifest.files)} files, {manifest.total_size / 1e6:.1f} MB unpacked")
    if verified.thin:
        carried = sum(e.size for e in manifest.files if e.path in verified.members)
        print(f"  carried     {len(verified.members)} files, {carried / 1e6:.1f} MB (the others are left out: "
              "the receiver must hold them)")
    print(f"  archive     {verified.size / 1e6:.1f} MB, sha256 {verified.sha256}")
    return 0


def _queries(args: argparse.Namespace) -> list[dict[str, Any]]:
    common: dict[str, Any] = {"k": args.k}
    if args.exclude:
        common["exclude_ids"] = args.exclude
    if args.label:
        common["label"] = args.label
    if args.year_min is not None:
        common["year_min"] = args.year_min
    if args.year_max is not None:
        common["year_max"] = args.year_max
    if args.lexical_weight is not None:
        common["lexical_weight"] = args.lexical_weight
    unlike = [{"publication_id": i} for i in args.unlike_id] + [{"text": t} for t in args.unlike_text]
    if unlike:
        common["unlike"] = unlike
    for name in ("diversity", "min_score", "offset"):
        if getattr(args, name) is not None:
            common[name] = getattr(args, name)
    queries = [dict(common, text=text) for text in args.texts]
    queries += [dict(common, publication_id=pub_id) for pub_id in args.publication_id]
    like = [{"publication_id": i} for i in args.like_id] + [{"text": t} for t in args.like_text]
    if like:
        queries.append(dict(common, like=like))
    if args.batch is not None:
        queries += read_batch(args.batch)
    return queries


def read_batch(path: Path) -> list[dict[str, Any]]:
    """The request bodies of a JSONL file (blank lines skipped); a line that is no JSON object is an error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidQuery(f"cannot read --batch {path}: {exc.strerror or exc}") from exc
    bodies = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except ValueError as exc:
            raise InvalidQuery(f"--batch {path}, line {number}: not JSON ({exc})") from None
        if not isinstance(body, dict):
            raise InvalidQuery(f"--batch {path}, line {number}: a request body must be a JSON object")
        bodies.append(body)
    return bodies


def cmd_recommend(args: argparse.Namespace) -> int:
    from recsys.archive import Limits, unpack
    from recsys.load import load_engine

    queries = _queries(args)
    if not queries:
        print("recsys recommend: error: give a query TEXT, --publication-id ID, --like-id/--like-text or --batch",
              file=sys.stderr)
        return 2
    if args.api:
        from recsys.cli.remote import recommend_remote

        answers = recommend_remote(args.api, queries, batch=args.batch is not None or len(queries) > 1)
    else:
        settings = load_settings()
        registry = Registry.discover(load=False)
        with tempfile.TemporaryDirectory(prefix="recsys-recommend-") as tmp:
            folder = Path(tmp) / "engine"
            manifest = unpack(args.archive, folder, Limits.from_settings(settings), engines=registry.usable())
            with load_engine(folder, registry=registry, settings=settings) as engine:
                info = {"name": manifest.engine, "version": manifest.version, "generation": None}
                answers = _answer_locally(engine, queries, info)
    failures = 0
    for raw, answer in zip(queries, answers, strict=True):
        if "error" in answer:
            failures += 1
            _report_failure(args, raw, answer["error"])
        elif args.json:
            _print_json(answer, compact=True)
        else:
            _print_human(raw, answer)
    return 7 if failures else 0


def _answer_locally(engine: Any, queries: list[dict[str, Any]], info: dict[str, Any]) -> list[dict[str, Any]]:
    """Each query's result or ``{"error"}``, answered with one ``recommend_many`` call."""
    from recsys.domain import Query

    answers: list[dict[str, Any] | None] = []
    parsed, places = [], []
    for raw in queries:
        try:
            parsed.append(Query.from_dict(raw))
        except RecsysError as exc:
            answers.append({"error": {"code": exc.code, "message": exc.message}})
            continue
        places.append(len(answers))
        answers.append(None)
    for place, found in zip(places, engine.recommend_many(parsed), strict=True):
        if isinstance(found, RecsysError):
            answers[place] = {"error": {"code": found.code, "message": found.message}}
        else:
            answers[place] = {"engine": info, "recommendations": [r.to_dict() for r in found]}
    return [answer for answer in answers if answer is not None]


def _report_failure(args: argparse.Namespace, raw: dict[str, Any], error: dict[str, Any]) -> None:
    if args.json:
        _print_json({"error": error}, compact=True)
    else:
        print(f"query {_what(raw)!r}: error: {error.get('message') or error.get('code')}", file=sys.stderr)


def _what(raw: dict[str, Any]) -> str:
    if raw.get("publication_id"):
        return f"publication {raw['publication_id']}"
    if raw.get("like"):
        return "like " + ", ".join(str(e.get("publication_id") or repr(str(e.get("text", ""))[:40]))
                                   for e in raw["like"] if isinstance(e, dict))
    return repr(str(raw.get("text", ""))[:80])


def _print_human(raw: dict[str, Any], result: dict[str, Any]) -> None:
    print(f"# {_what(raw)}")
    if not result["recommendations"]:
        print("  (no recommendations)")
    for rank, rec in enumerate(result["recommendations"], start=1 + int(raw.get("offset") or 0)):
        meta = ", ".join(str(x) for x in (rec.get("label"), rec.get("year")) if x is not None)
        suffix = f"  [{meta}]" if meta else ""
        print(f"{rank:>3}. {rec['score']:.3f}  {rec['publication_id']}  {rec['title']}{suffix}")
        for ev in rec["evidence"][:2]:
            print(f"       {_evidence_line(ev)}")
    print()


def _evidence_line(evidence: dict[str, Any]) -> str:
    """``0.830  “query sentence” → “matched sentence”``: which query sentence matched which
    sentence of the publication (two evidence lines may match the same stored sentence)."""
    matched = f"“{_clip(evidence['sentence'])}”"
    query = evidence.get("query_sentence")
    if query:
        matched = f"“{_clip(str(query), 60)}” → {matched}"
    return f"{evidence['score']:.3f}  {matched}"


def _clip(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
