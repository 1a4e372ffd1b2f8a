"""The change log of live updates: durable records, statuses that follow the engine
in service, and the pushed set that builds merge into the source's records."""

from __future__ import annotations

import sqlite3

import pytest

from recsys.changes import DB_NAME, ChangeLog, PushedSet, merge
from recsys.domain import Publication


def pub(pid: str, title: str = "A title") -> dict:
    return {"id": pid, "title": title, "abstract": f"About {pid}."}


@pytest.fixture
def log(tmp_path) -> ChangeLog:
    return ChangeLog(tmp_path)


def test_a_change_is_recorded_pending_and_survives_reopening(log, tmp_path):
    change = log.record([pub("a"), pub("b")], ["c"])
    assert change["change_id"] == 1 and change["status"] == "pending"
    assert change["upserts"] == ["a", "b"] and change["deletes"] == ["c"]
    assert change["status_url"] == "/v1/publications/changes/1"
    # Given a new process on the same folder, Then the change is there
    again = ChangeLog(tmp_path)
    assert again.get(1)["upserts"] == ["a", "b"]
    assert again.pending() == [1]


def test_the_database_is_in_wal_mode_with_full_sync(log, tmp_path):
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with log._connect() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_the_pushed_set_has_the_latest_operation_per_id(log):
    log.record([pub("a", "first"), pub("b")], [])
    log.record([pub("a", "second")], ["b"])
    log.record([], ["z"])
    pushed = log.pushed()
    assert pushed.changes_through == 3 and pushed.pending == (1, 2, 3)
    assert pushed.upserts == {"a": pub("a", "second")}
    assert pushed.deletes == {"b", "z"}
    # a delete then an upsert of the same id: the upsert wins
    log.record([pub("z")], [])
    assert "z" in log.pushed().upserts and "z" not in log.pushed().deletes


def test_reconcile_applies_up_to_changes_through_and_rolls_back_past_it(log):
    for n in range(3):
        log.record([pub(f"p{n}")], [])
    assert log.reconcile(5, 2) == (2, 0)
    assert [log.get(n)["status"] for n in (1, 2, 3)] == ["applied", "applied", "pending"]
    assert log.get(1)["generation"] == 5
    assert log.reconcile(6, 3) == (1, 0)
    # a rollback to the engine of generation 5 (changes through 2)
    assert log.reconcile(7, 2) == (0, 1)
    change = log.get(3)
    assert change["status"] == "rolled_back" and "generation 7" in change["reason"]
    # rolled-back changes leave the pushed set and are not pending: never re-applied
    assert set(log.pushed().upserts) == {"p0", "p1"} and log.pushed().pending == ()
    # idempotent, and a manifest that says nothing changes nothing
    assert log.reconcile(7, 2) == (0, 0)
    assert log.reconcile(8, None) == (0, 0)


def test_refused_changes_leave_the_pushed_set(log):
    log.record([pub("a")], [])
    log.record([pub("b")], [])
    assert log.mark_refused(1, "apply_refused: the engine does not load") == 1
    assert log.get(1)["status"] == "refused" and "does not load" in log.get(1)["reason"]
    assert log.get(2)["status"] == "pending"
    assert set(log.pushed().upserts) == {"b"}


def test_clearing_the_pushed_set_keeps_pending_changes(log):
    log.record([pub("a")], ["x"])
    log.reconcile(2, 1)
    log.record([pub("b")], [])
    assert log.clear_pushed() == 1
    pushed = log.pushed()
    assert set(pushed.upserts) == {"b"} and not pushed.deletes
    assert log.get(1)["cleared"] and log.get(1)["status"] == "applied"


def test_find_by_status_and_by_publication(log):
    log.record([pub("a")], [])
    log.record([], ["a"])
    log.record([pub("b")], [])
    log.reconcile(3, 1)
    assert [c["change_id"] for c in log.find()] == [3, 2, 1]
    assert [c["change_id"] for c in log.find(status="pending")] == [3, 2]
    assert [(c["change_id"], c["op"]) for c in log.find(publication_id="a")] == [(2, "delete"), (1, "upsert")]
    assert [c["change_id"] for c in log.find(limit=1, before=3)] == [2]
    assert log.counts() == {"pending": 2, "applied": 1, "rolled_back": 0, "refused": 0}


def test_merge_replaces_adds_and_removes_source_records():
    source = [Publication.from_dict(pub(p)) for p in ("a", "b", "c")]
    pushed = PushedSet(4, {"b": pub("b", "Pushed B"), "n": pub("n")}, frozenset({"c", "absent"}), ())
    corpus = merge(source, pushed)
    assert [(p.id, p.title) for p in corpus] == [("a", "A title"), ("b", "Pushed B"), ("n", "A title")]


def test_a_pushed_set_round_trips_through_json_and_refuses_bad_bodies(log):
    log.record([pub("a")], ["b"])
    pushed = log.pushed()
    assert PushedSet.from_dict(pushed.to_dict()) == pushed
    with pytest.raises(ValueError, match="changes_through"):
        PushedSet.from_dict({"changes_through": -1, "upserts": [], "deletes": [], "pending": []})
