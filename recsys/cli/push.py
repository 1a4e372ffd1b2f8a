"""``recsys push FILE.jsonl [--delete ID ...] [--wait]``: live publication updates.

Sends the publications of a JSON Lines (or JSON) file (``.gz`` too; ``-`` for stdin), read
like a file source (:class:`recsys.sources.FileSource`), as upserts,
and the ``--delete`` ids as deletes, to ``POST /v1/publications`` of the API at
``RECSYS_API_URL`` (``--api``) with ``RECSYS_API_TOKEN`` (``--token``), 1,000 of each per
request; prints each change's id. ``--wait`` follows the changes until none is
pending: exit 0 when every one is applied, 1 when one was refused or rolled back, or
still pending after ``--timeout`` seconds. Works against a deployment's API and
against ``recsys serve`` (whose token it prints at start).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx

from recsys.config import Settings
from recsys.errors import ConfigError, InvalidRecord, RecsysError, Unavailable
from recsys.sources.files import FileSource, parse_records

__all__ = ["BATCH", "add_command", "push"]

#: Upserts (and deletes) per request: the API's limit.
BATCH = 1000
POLL_SECONDS = 0.5


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "push", help="push publication upserts and deletes to the API (live updates)",
        description="Send publications (JSON Lines) as upserts and --delete ids to POST /v1/publications; "
                    "the workers apply them within seconds, without a full build.",
    )
    parser.add_argument("file", nargs="?", help="publications to upsert: JSON lines or a JSON array (.gz too; "
                                                "- for stdin)")
    parser.add_argument("--delete", nargs="+", default=[], metavar="ID", help="publication ids to delete")
    parser.add_argument("--wait", action="store_true", help="wait until the changes are applied")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits (default: %(default)s)")
    parser.add_argument("--api", help="the API's URL (default: RECSYS_API_URL)")
    parser.add_argument("--token", help="the API token (default: RECSYS_API_TOKEN)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    api = (args.api or settings.api_url).rstrip("/")
    token = args.token or settings.api_token
    if not token:
        raise ConfigError("pushing needs the API's token: set RECSYS_API_TOKEN or pass --token "
                          "('recsys serve' prints the token of its run)")
    if args.file is None and not args.delete:
        raise RecsysError("nothing to push: give a JSON Lines file of publications and/or --delete ID ...")
    upserts = list(_records(args.file)) if args.file is not None else []
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=60.0) as client:
        ids = push(client, upserts, list(args.delete))
        for change_id in ids:
            print(f"change {change_id}: pending ({api}/v1/publications/changes/{change_id})")
        if not args.wait:
            return 0
        return _wait(client, ids, args.timeout)


def push(client: httpx.Client, upserts: list[dict[str, Any]], deletes: list[str]) -> list[int]:
    """POST the upserts and deletes in batches of :data:`BATCH`; the change ids."""
    ids: list[int] = []
    for start in range(0, max(len(upserts), len(deletes)), BATCH):
        body = {"upsert": upserts[start:start + BATCH], "delete": deletes[start:start + BATCH]}
        try:
            response = client.post("/v1/publications", json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(f"the API at {client.base_url} is unreachable: {exc}") from exc
        if response.status_code != 202:
            raise RecsysError(f"the API refused the push (HTTP {response.status_code}): {_describe(response)}"
                              + (f" (batch from record {start + 1})" if start else ""))
        ids.append(int(response.json()["change_id"]))
    return ids


def _wait(client: httpx.Client, ids: list[int], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    statuses: dict[int, dict[str, Any]] = {}
    while True:
        for change_id in ids:
            if statuses.get(change_id, {}).get("status", "pending") == "pending":
                response = client.get(f"/v1/publications/changes/{change_id}")
                if response.status_code == 200:
                    statuses[change_id] = response.json()
        if all(s.get("status") != "pending" for s in (statuses.get(i, {"status": "pending"}) for i in ids)):
            break
        if time.monotonic() > deadline:
            print(f"still pending after {timeout:g} s: changes "
                  + ", ".join(str(i) for i in ids if statuses.get(i, {}).get("status", "pending") == "pending"),
                  file=sys.stderr)
            return 1
        time.sleep(POLL_SECONDS)
    failed = 0
    for change_id in ids:
        change = statuses[change_id]
        if change["status"] == "applied":
            print(f"change {change_id}: applied by engine generation {change['generation']}")
        else:
            failed += 1
            print(f"change {change_id}: {change['status']}: {change.get('reason') or ''}", file=sys.stderr)
    return 1 if failed else 0


def _records(name: str) -> Iterator[dict[str, Any]]:
    """The publications of a file read like a file source's (JSON lines or a JSON
    document, gzipped or not; ``-``: standard input); a record that is not valid JSON or
    not an object is an error (nothing is pushed)."""
    if name == "-":
        records = parse_records(cast(io.BufferedReader, sys.stdin.buffer), "standard input")
    else:
        if not Path(name).is_file():
            raise RecsysError(f"no file {name!r} to push")
        records = FileSource(name).records()
    for record in records:
        if record.error is not None:
            raise InvalidRecord(f"{name}, {record.where}: {record.error}")
        if not isinstance(record.data, dict):
            raise InvalidRecord(f"{name}, {record.where}: a publication must be a JSON object")
        yield record.data


def _describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return ": ".join(str(body[k]) for k in ("title", "description") if body.get(k)) or str(body)
    return str(body)[:300]
