"""The API's log of pushed publication changes (live updates), in SQLite.

``POST /v1/publications`` records each request as one *change* (its upserts and
deletes) before it answers 202: the commit is durable (WAL journal,
``synchronous=FULL``: fsynced) in ``<data_dir>/changes.sqlite3``, so a change
survives a crash of the API right after its answer. Redis is not used: it runs
without persistence.

A change's ``status``:

============  ==================================================================
pending       recorded, not in the engine in service yet
applied       in the engine in service since ``generation`` (an apply, or a full
              build, whose manifest's ``changes_through`` is at least its id)
rolled_back   it was applied, then a rollback made current an engine that does
              not include it; it is not applied again unless pushed again
refused       its apply could not be built, checked or uploaded (``reason``)
============  ==================================================================

The *pushed set* is, for each publication id, the latest upsert or delete of the
changes that are pending or applied (and not cleared by an operator); builds merge it
into the source's records: a pushed upsert replaces the source's record with the same
id, a pushed delete removes it. :meth:`ChangeLog.reconcile` moves statuses to follow the
engine in service (applied up to its ``changes_through``, rolled back past it); it is
idempotent, so the API runs it after each upload and rollback and again periodically
(a crash between the engine's change and the log's loses nothing).

Every method opens its own connection: safe across threads and gunicorn processes
(SQLite's locking; writers take ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.cluster import utcnow_iso
from recsys.domain import Publication
from recsys.errors import StoreError

__all__ = ["DB_NAME", "STATUSES", "ChangeLog", "PushedSet", "merge"]

DB_NAME = "changes.sqlite3"
STATUSES = ("pending", "applied", "rolled_back", "refused")
#: Seconds a writer waits for another process's write transaction.
BUSY_TIMEOUT = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    status TEXT NOT NULL,
    generation INTEGER,
    reason TEXT,
    cleared INTEGER NOT NULL DEFAULT 0,
    upserts INTEGER NOT NULL,
    deletes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_status ON changes (status, id);
CREATE TABLE IF NOT EXISTS items (
    change_id INTEGER NOT NULL REFERENCES changes (id),
    position INTEGER NOT NULL,
    publication_id TEXT NOT NULL,
    op TEXT NOT NULL,
    record TEXT,
    PRIMARY KEY (change_id, position)
);
CREATE INDEX IF NOT EXISTS items_publication ON items (publication_id, change_id);
"""


@dataclass(frozen=True)
class PushedSet:
    """The pushed set as of change ``changes_through``: ``upserts`` (publication records,
    by id), ``deletes`` (ids), and the ids of the changes still ``pending``."""

    changes_through: int
    upserts: dict[str, dict[str, Any]]
    deletes: frozenset[str]
    pending: tuple[int, ...]

    @classmethod
    def from_dict(cls, data: Any) -> PushedSet:
        """The pushed set from ``GET /v1/publications/pushed``'s JSON (ValueError if malformed)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"the pushed set must be a JSON object, got {type(data).__name__}")
        through, upserts, deletes, pending = (data.get(k) for k in ("changes_through", "upserts", "deletes",
                                                                     "pending"))
        if isinstance(through, bool) or not isinstance(through, int) or through < 0:
            raise ValueError(f"'changes_through' must be a whole number >= 0, got {through!r}")
        if not (isinstance(upserts, list) and all(isinstance(r, dict) and isinstance(r.get("id"), str)
                                                  for r in upserts)):
            raise ValueError("'upserts' must be a list of publication records, each with a string 'id'")
        if not (isinstance(deletes, list) and all(isinstance(d, str) for d in deletes)):
            raise ValueError("'deletes' must be a list of publication ids")
        if not (isinstance(pending, list) and all(isinstance(n, int) for n in pending)):
            raise ValueError("'pending' must be a list of change ids")
        return cls(through, {str(r["id"]): r for r in upserts}, frozenset(deletes), tuple(pending))

    def to_dict(self) -> dict[str, Any]:
        return {"changes_through": self.changes_through, "pending": list(self.pending),
                "upserts": list(self.upserts.values()), "deletes": sorted(self.deletes)}


class ChangeLog:
    """The change log in ``folder`` (created if missing)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / DB_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the publication change log {self.path}: {exc}; check RECSYS_DATA_DIR") \
                from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the publication change log {self.path}: {exc}") from exc
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.row_factory = sqlite3.Row
            yield db
        except sqlite3.Error as exc:
            raise StoreError(f"the publication change log {self.path} failed: {exc}; check RECSYS_DATA_DIR") from exc
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- writing -------------------------------------------------------------------

    def record(self, upserts: Sequence[Mapping[str, Any]], deletes: Sequence[str]) -> dict[str, Any]:
        """Record one change (upserts: publication records with an ``id``; deletes: ids),
        durably; returns it as :meth:`get` does."""
        now = utcnow_iso()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO changes (created_at, updated_at, status, upserts, deletes) VALUES (?, ?, 'pending', ?, ?)",
                (now, now, len(upserts), len(deletes)),
            )
            change_id = int(cursor.lastrowid or 0)
            rows: list[tuple[int, int, str, str, str | None]] = [
                (change_id, n, str(r["id"]), "upsert", json.dumps(dict(r), ensure_ascii=False))
                for n, r in enumerate(upserts)
            ]
            rows += [(change_id, len(upserts) + n, str(pid), "delete", None) for n, pid in enumerate(deletes)]
            db.executemany("INSERT INTO items (change_id, position, publication_id, op, record) VALUES (?, ?, ?, ?, ?)",
                           rows)
        found = self.get(change_id)
        assert found is not None
        return found

    def mark_applied(self, through: int, generation: int) -> int:
        """Pending changes up to ``through`` are applied by ``generation``; returns how many."""
        with self._write() as db:
            return db.execute(
                "UPDATE changes SET status = 'applied', generation = ?, reason = NULL, updated_at = ? "
                "WHERE status = 'pending' AND id <= ?", (generation, utcnow_iso(), through),
            ).rowcount

    def mark_refused(self, through: int, reason: str) -> int:
        """Pending changes up to ``through`` are refused (their apply failed: ``reason``)."""
        with self._write() as db:
            return db.execute(
                "UPDATE changes SET status = 'refused', reason = ?, updated_at = ? "
                "WHERE status = 'pending' AND id <= ?",
                (reason[:2000], utcnow_iso(), through),
            ).rowcount

    def reconcile(self, generation: int, changes_through: int | None) -> tuple[int, int]:
        """Follow the engine in service (``generation``, whose manifest says ``changes_through``):
        pending changes up to it become applied, applied changes past it rolled back.
        Returns (applied, rolled back); nothing changes when ``changes_through`` is None."""
        if changes_through is None:
            return 0, 0
        now = utcnow_iso()
        with self._write() as db:
            applied = db.execute(
                "UPDATE changes SET status = 'applied', generation = ?, reason = NULL, updated_at = ? "
                "WHERE status = 'pending' AND id <= ?", (generation, now, changes_through),
            ).rowcount
            rolled_back = db.execute(
                "UPDATE changes SET status = 'rolled_back', reason = ?, updated_at = ? "
                "WHERE status = 'applied' AND id > ?",
                (f"engine generation {generation} does not include it (a rollback)", now, changes_through),
            ).rowcount
        return applied, rolled_back

    def clear_pushed(self, through: int | None = None) -> int:
        """Leave the changes up to ``through`` (default: all) that are not pending out of the
        pushed set from now on (the source has caught up with them); returns how many."""
        with self._write() as db:
            limit = through if through is not None else 2**62
            return db.execute(
                "UPDATE changes SET cleared = 1, updated_at = ? WHERE cleared = 0 AND status != 'pending' AND id <= ?",
                (utcnow_iso(), limit),
            ).rowcount

    # -- reading -------------------------------------------------------------------

    def get(self, change_id: int) -> dict[str, Any] | None:
        """One change: ``{"change_id", "status", "generation", "reason", "created_at",
        "updated_at", "cleared", "upserts": [ids], "deletes": [ids]}``, or None."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM changes WHERE id = ?", (change_id,)).fetchone()
            if row is None:
                return None
            items = db.execute("SELECT publication_id, op FROM items WHERE change_id = ? ORDER BY position",
                               (change_id,)).fetchall()
        body = _change(row)
        body["upserts"] = [i["publication_id"] for i in items if i["op"] == "upsert"]
        body["deletes"] = [i["publication_id"] for i in items if i["op"] == "delete"]
        return body

    def find(self, *, status: str | None = None, publication_id: str | None = None,
             limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        """Changes, newest first (``before``: with an id below it), optionally of one
        ``status`` or touching ``publication_id`` (then each says ``op``: upsert or delete)."""
        query = "SELECT c.*{} FROM changes c{} WHERE 1 = 1"
        args: list[Any] = []
        if publication_id is not None:
            query = query.format(", i.op AS op", " JOIN items i ON i.change_id = c.id") + " AND i.publication_id = ?"
            args.append(publication_id)
        else:
            query = query.format("", "")
        if status is not None:
            query += " AND c.status = ?"
            args.append(status)
        if before is not None:
            query += " AND c.id < ?"
            args.append(before)
        query += " ORDER BY c.id DESC LIMIT ?"
        args.append(limit)
        with self._connect() as db:
            rows = db.execute(query, args).fetchall()
        out = []
        for row in rows:
            body = _change(row)
            if publication_id is not None:
                body["op"] = row["op"]
            out.append(body)
        return out

    def counts(self) -> dict[str, int]:
        """How many changes have each status."""
        with self._connect() as db:
            rows = db.execute("SELECT status, COUNT(*) AS n FROM changes GROUP BY status").fetchall()
        found = {row["status"]: int(row["n"]) for row in rows}
        return {status: found.get(status, 0) for status in STATUSES}

    def pending(self) -> list[int]:
        with self._connect() as db:
            return [int(r["id"]) for r in db.execute("SELECT id FROM changes WHERE status = 'pending' ORDER BY id")]

    def pushed(self) -> PushedSet:
        """The pushed set now (one read transaction: consistent with its ``changes_through``)."""
        with self._connect() as db:
            db.execute("BEGIN")
            try:
                top = db.execute("SELECT COALESCE(MAX(id), 0) AS top FROM changes").fetchone()["top"]
                pending = tuple(int(r["id"]) for r in db.execute(
                    "SELECT id FROM changes WHERE status = 'pending' ORDER BY id"))
                rows = db.execute(
                    "SELECT i.publication_id, i.op, i.record FROM items i JOIN changes c ON c.id = i.change_id "
                    "WHERE c.status IN ('pending', 'applied') AND c.cleared = 0 ORDER BY i.change_id, i.position"
                ).fetchall()
            finally:
                db.execute("COMMIT")
        latest: dict[str, tuple[str, str | None]] = {}
        for row in rows:
            latest.pop(row["publication_id"], None)  # the latest op goes last (dicts keep order)
            latest[row["publication_id"]] = (row["op"], row["record"])
        upserts = {pid: json.loads(rec) for pid, (op, rec) in latest.items() if op == "upsert" and rec is not None}
        deletes = frozenset(pid for pid, (op, _) in latest.items() if op == "delete")
        return PushedSet(int(top), upserts, deletes, pending)


def _change(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "change_id": int(row["id"]), "status": row["status"], "generation": row["generation"],
        "reason": row["reason"], "created_at": row["created_at"], "updated_at": row["updated_at"],
        "cleared": bool(row["cleared"]), "counts": {"upserts": int(row["upserts"]), "deletes": int(row["deletes"])},
        "status_url": f"/v1/publications/changes/{int(row['id'])}",
    }


def merge(publications: Sequence[Publication], pushed: PushedSet) -> list[Publication]:
    """A build's corpus: the source's ``publications`` with the pushed upserts replacing
    (or adding) the records of their ids and the pushed deletes removed. The source's
    order is kept; pushed upserts that are new go last, in push order."""
    replaced = set(pushed.upserts) | pushed.deletes
    corpus = [p for p in publications if p.id not in replaced]
    corpus.extend(Publication.from_dict(record) for record in pushed.upserts.values())
    return corpus
