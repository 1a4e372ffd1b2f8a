"""Bad-input storms: every kind of request the API refuses, sent in rounds from
keep-alive clients, and the resident memory of gunicorn's processes (from /proc).

:data:`BAD_INPUTS` lists each kind with the status the API answers it with: malformed
JSON, wrong types, a huge ``k``, 10 MB bodies with and without ``Content-Length``, BOM
and UTF-16, duplicate keys, a bad charset, a bad ``Prefer``, unknown routes and task
ids, bad tokens on a 5 MB archive upload, ... :func:`storm_round` sends one round;
:func:`memory` reads the RSS of a gunicorn master and of each of its workers. Used by
``tests/faults/test_api_memory.py`` and ``benchmarks/_storm.py``.
"""

from __future__ import annotations

import codecs
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["BAD_INPUTS", "BadInput", "children", "memory", "rss_mb", "storm_round"]

MIB = 1024 * 1024
RECOMMEND = "/v1/recommendations"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class BadInput:
    """One kind of request the API refuses, and the status it must answer."""

    name: str
    status: int
    send: Callable[[httpx.Client], httpx.Response]


def _post(body: bytes, headers: dict[str, str] | None = None) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.post(RECOMMEND, content=body, headers=headers or JSON)


def _chunks(size: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """A body of ``size`` bytes sent without Content-Length (``Transfer-Encoding: chunked``)."""
    block = b" " * piece
    sent = 0
    while sent < size:
        yield block[: min(piece, size - sent)]
        sent += piece


_BIG = b'{"text": "' + b"a" * (10 * MIB) + b'"}'
_ARCHIVE = b"PK" + b"\0" * (5 * MIB)

#: Every kind of bad input, each with the status the API answers.
BAD_INPUTS: tuple[BadInput, ...] = (
    BadInput("malformed_json", 400, _post(b'{"text": "neural networks", ')),
    BadInput("not_utf8", 400, _post(b'{"text": "\xff\xfe neural"}')),
    BadInput("wrong_type_text", 400, _post(b'{"text": 12345}')),
    BadInput("wrong_type_k", 400, _post(b'{"text": "neural networks", "k": "ten"}')),
    BadInput("huge_k", 400, _post(b'{"text": "neural networks", "k": 1' + b"0" * 400 + b"}")),
    BadInput("float_k", 400, _post(b'{"text": "neural networks", "k": 1e308}')),
    BadInput("unknown_field", 400, _post(b'{"text": "neural networks", "colour": "red"}')),
    BadInput("neither_field", 400, _post(b'{"k": 3}')),
    BadInput("not_an_object", 400, _post(b'[1, 2, 3]')),
    BadInput("deep_nesting", 400, _post(b"[" * 100_000 + b"]" * 100_000)),
    BadInput("nan", 400, _post(b'{"text": "neural networks", "k": NaN}')),
    BadInput("lone_surrogate", 400, _post(b'{"text": "neural \\ud800 networks"}')),
    BadInput("no_words", 400, _post(b'{"text": "\\u0000\\u200b ..."}')),
    BadInput("bom", 400, _post(codecs.BOM_UTF8 + b'{"text": "neural networks"}')),
    BadInput("utf16", 400, _post('{"text": "neural networks"}'.encode("utf-16-le"))),
    BadInput("duplicate_keys", 400, _post(b'{"text": "neural networks", "text": "again"}')),
    BadInput("empty_body", 400, _post(b"")),
    BadInput("bad_charset", 415, _post(b'{"text": "neural networks"}',
                                       {"Content-Type": "application/json; charset=latin-1"})),
    BadInput("not_json", 415, _post(b"text=neural", {"Content-Type": "application/x-www-form-urlencoded"})),
    BadInput("bad_prefer", 400, _post(b'{"text": "neural networks"}', {**JSON, "Prefer": "respond-async;;="})),
    BadInput("too_large_10mb", 413, _post(_BIG)),
    BadInput("too_large_chunked", 413,
             lambda client: client.post(RECOMMEND, content=_chunks(10 * MIB), headers=JSON)),
    BadInput("unknown_route", 404, lambda client: client.get(f"/v1/nothing/{uuid.uuid4().hex}")),
    BadInput("method_not_allowed", 405, lambda client: client.delete(RECOMMEND)),
    BadInput("unknown_task", 404, lambda client: client.get(f"/v1/tasks/{uuid.uuid4()}")),
    BadInput("bad_token_archive", 401, lambda client: client.put(
        "/v1/engine/archive", content=_ARCHIVE,
        headers={"Content-Type": "application/zip", "Authorization": "Bearer wrong"})),
    BadInput("no_token_archive", 401, lambda client: client.put(
        "/v1/engine/archive", content=_ARCHIVE, headers={"Content-Type": "application/zip"})),
)


# -- memory ------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (VmRSS of /proc/<pid>/status); 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (gunicorn's workers), by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def memory(master: int) -> dict[str, Any]:
    """RSS in MB of gunicorn's master and its workers: ``total_mb``, ``master_mb`` and
    ``workers_mb`` (by pid)."""
    workers = {str(pid): round(rss_mb(pid), 1) for pid in children(master)}
    master_mb = round(rss_mb(master), 1)
    return {"total_mb": round(master_mb + sum(workers.values()), 1), "master_mb": master_mb, "workers_mb": workers}


# -- the storm ---------------------------------------------------------------------------


def storm_round(url: str, requests: int, clients: int, kinds: tuple[BadInput, ...] = BAD_INPUTS,
                timeout: float = 60.0) -> Counter[str]:
    """Send ``requests`` bad requests (the kinds in turn) from ``clients`` keep-alive
    clients; the count of each ``kind:status`` (``kind:expected->got`` when it differs,
    ``kind:error`` for a transport error)."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    turn = iter(range(requests))

    def client_loop(client: httpx.Client) -> None:
        while True:
            with lock:
                number = next(turn, None)
            if number is None:
                return
            kind = kinds[number % len(kinds)]
            try:
                status = kind.send(client).status_code
                key = f"{kind.name}:{status}" if status == kind.status else f"{kind.name}:{kind.status}->{status}"
            except httpx.TransportError as exc:
                key = f"{kind.name}:error {type(exc).__name__}"
            with lock:
                counts[key] += 1

    pool = [httpx.Client(base_url=url, timeout=timeout) for _ in range(clients)]
    try:
        threads = [threading.Thread(target=client_loop, args=(client,), daemon=True) for client in pool]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for client in pool:
            client.close()
    return counts
