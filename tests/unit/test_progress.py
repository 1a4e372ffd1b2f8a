"""recsys.progress: task progress records (throttled, with rate and time left) and the build history."""

from __future__ import annotations

import pytest

from recsys.errors import Unavailable
from recsys.kv import MemoryKV
from recsys.progress import HISTORY_LIMIT, BuildHistory, ProgressRecord, ProgressRecorder, ProgressStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def recorder(kv: MemoryKV, clock: Clock, **kwargs) -> ProgressRecorder:
    return ProgressRecorder(ProgressStore(kv, ttl=60), "task-1", clock=clock, interval=1.0, **kwargs)


def test_a_stage_is_recorded_at_its_first_step_then_at_most_every_interval_and_at_its_last():
    kv, clock = MemoryKV(), Clock()
    stored: list[ProgressRecord] = []
    progress = recorder(kv, clock, listeners=[stored.append])

    progress("encode", 0, 1000)
    clock.now += 0.5
    progress("encode", 100, 1000)  # within the interval: not stored
    clock.now += 0.5
    progress("encode", 200, 1000)
    clock.now += 0.1
    progress("encode", 1000, 1000)  # the last step: always stored

    assert [(r.stage, r.done) for r in stored] == [("encode", 0), ("encode", 200), ("encode", 1000)]
    assert ProgressStore(kv, ttl=60).get("task-1") == stored[-1]


def test_rate_and_time_left_come_from_the_stage_so_far():
    kv, clock = MemoryKV(), Clock()
    progress = recorder(kv, clock)

    progress("encode", 0, 1000)
    clock.now += 2.0
    progress("encode", 400, 1000)

    record = ProgressStore(kv, ttl=60).get("task-1")
    assert record is not None
    assert record.to_dict() | {"started_at": "", "updated_at": ""} == {
        "stage": "encode", "done": 400, "total": 1000, "rate": 200.0, "eta_s": 3.0,
        "started_at": "", "updated_at": "",
    }


def test_an_unknown_total_has_no_time_left_and_a_new_stage_starts_its_own_rate():
    kv, clock = MemoryKV(), Clock()
    progress = recorder(kv, clock)
    progress("fetch", 0)
    clock.now += 1.0
    progress("fetch", 50)
    assert ProgressStore(kv, ttl=60).get("task-1").eta_s is None

    progress("split", 0, 10)
    record = ProgressStore(kv, ttl=60).get("task-1")
    assert (record.stage, record.rate, record.eta_s) == ("split", 0.0, None)


def test_every_report_reaches_the_other_hook():
    seen = []
    progress = recorder(MemoryKV(), Clock(), also=lambda stage, done, total=None: seen.append((stage, done, total)))
    progress("encode", 1, 5)
    progress("encode", 2, 5)
    assert seen == [("encode", 1, 5), ("encode", 2, 5)]


class DownKV(MemoryKV):
    def set(self, key, value, *, ttl=None, nx=False):
        raise Unavailable("Redis is down")


def test_a_kv_failure_never_fails_the_task(caplog):
    progress = ProgressRecorder(ProgressStore(DownKV(), ttl=60), "task-1", interval=0.0)
    progress("encode", 1, 5)
    progress("encode", 2, 5)
    assert progress.last is not None and progress.last.done == 2
    assert sum("cannot record the progress" in r.message for r in caplog.records) == 1


def test_an_unreadable_record_reads_as_none():
    kv = MemoryKV()
    kv.set("recsys:progress:t", "not json")
    assert ProgressStore(kv, ttl=60).get("t") is None
    assert ProgressStore(kv, ttl=60).get("missing") is None


def test_the_history_keeps_the_last_builds_newest_first_and_replaces_a_redelivered_one():
    history = BuildHistory(MemoryKV())
    for n in range(HISTORY_LIMIT + 3):
        history.add({"task_id": f"t{n}", "outcome": "succeeded"})
    history.add({"task_id": f"t{HISTORY_LIMIT + 1}", "outcome": "failed"})

    last = history.last()
    assert len(last) == HISTORY_LIMIT
    assert last[0] == {"task_id": f"t{HISTORY_LIMIT + 1}", "outcome": "failed"}
    assert [e["task_id"] for e in last[1:3]] == [f"t{HISTORY_LIMIT + 2}", f"t{HISTORY_LIMIT}"]


@pytest.mark.parametrize("value", ["[", "{}", "[1, {\"task_id\": \"a\"}]"])
def test_a_damaged_history_is_read_as_far_as_it_goes(value):
    kv = MemoryKV()
    kv.set("recsys:build:history", value)
    assert BuildHistory(kv).last() == ([{"task_id": "a"}] if "task_id" in value else [])
