"""KV stores and the cluster state built on them: heartbeats, build lock, task records."""

from __future__ import annotations

import time

import pytest

from recsys.cluster import BuildLock, Heartbeats, TaskRecords, WorkerInfo
from recsys.errors import BuildLockHeld, Unavailable
from recsys.kv import MemoryKV, RedisKV


@pytest.fixture(params=["memory", "redis"])
def kv(request):
    if request.param == "memory":
        yield MemoryKV()
        return
    store = RedisKV(request.getfixturevalue("redis_url"))
    yield store
    store.client.flushdb()
    store.close()


def test_set_nx_delete_if_and_expire_if(kv):
    assert kv.set("a", "1", nx=True)
    assert not kv.set("a", "2", nx=True)
    assert kv.get("a") == "1"
    assert not kv.delete_if("a", "2") and kv.get("a") == "1"
    assert kv.delete_if("a", "1") and kv.get("a") is None
    kv.set("b", "x", ttl=0.2)
    assert kv.expire_if("b", "x", 60) and not kv.expire_if("b", "y", 60)


def test_expiry(kv):
    kv.set("short", "v", ttl=0.05)
    deadline = time.monotonic() + 5
    while kv.get("short") is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kv.get("short") is None


def test_scan_by_prefix(kv):
    kv.set("p:1", "a")
    kv.set("p:2", "b")
    kv.set("q:1", "c")
    assert kv.scan("p:") == {"p:1": "a", "p:2": "b"}


def test_memory_kv_drops_expired_keys_as_it_goes():
    kv = MemoryKV()
    for i in range(3000):
        kv.set(f"k{i}", "v", ttl=0.0001)
    time.sleep(0.01)
    kv.set("last", "v")
    assert len(kv) < 1100


def test_redis_kv_fails_fast_with_unavailable():
    kv = RedisKV("redis://127.0.0.1:1/0", timeout=0.5)
    with pytest.raises(Unavailable, match="Redis at redis://127.0.0.1:1/0 is unreachable"):
        kv.get("x")
    with pytest.raises(Unavailable):
        kv.ping()


def test_heartbeats_list_live_workers(kv):
    beats = Heartbeats(kv, interval=10)
    a = WorkerInfo(host="m1", pid=2, queues=["q"], generation=3, version="v3")
    b = WorkerInfo(host="m1", pid=1)
    beats.beat(a)
    beats.beat(b)
    live = beats.live()
    assert [(w["host"], w["pid"]) for w in live] == [("m1", 1), ("m1", 2)]
    assert live[1]["generation"] == 3 and live[1]["seen_at"]
    beats.forget(a)
    assert [w["pid"] for w in beats.live()] == [1]


def test_build_lock_is_exclusive_and_says_who_holds_it(kv):
    lock = BuildLock(kv, ttl=30)
    token = lock.acquire(host="m1", pid=42, message_id="m-1")
    with pytest.raises(BuildLockHeld, match=r"already running on m1 \(pid 42\)"):
        BuildLock(kv, ttl=30).acquire(host="m2", pid=7)
    assert lock.holder()["message_id"] == "m-1" and "token" not in lock.holder()
    assert "already running" in lock.busy()
    assert lock.renew(token)
    assert not lock.release("not-the-token")
    assert lock.release(token)
    assert lock.busy() is None
    assert not lock.renew(token)


def test_an_expired_lock_frees_itself(kv):
    lock = BuildLock(kv, ttl=0.1)
    lock.acquire()
    deadline = time.monotonic() + 5
    while lock.holder() is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert BuildLock(kv, ttl=30).acquire()


def test_queued_marker_and_tick_claims(kv):
    lock = BuildLock(kv, ttl=30)
    assert lock.mark_queued("m-1") and not lock.mark_queued("m-2")
    assert "task m-1" in lock.busy()
    lock.clear_queued("m-2")
    assert lock.queued() == "m-1"
    lock.clear_queued("m-1")
    assert lock.queued() is None
    assert lock.claim_tick("2026-01-01T03:00:00+00:00")
    assert not lock.claim_tick("2026-01-01T03:00:00+00:00")


def test_task_records(kv):
    records = TaskRecords(kv, ttl=60)
    assert records.get("nope") is None
    records.record("t1", actor="recommend", queue="recsys.requests")
    assert records.get("t1")["actor"] == "recommend"


def test_rollout_progress_is_reported_per_machine_and_read_back():
    from recsys.cluster import RolloutProgress, Rollouts
    from recsys.kv import MemoryKV

    rollouts = Rollouts(MemoryKV())
    progress = RolloutProgress(generation=4, version="20261201T100000000000Z", host="w1", bytes_needed=10)
    rollouts.report(progress)
    progress.bytes_fetched, progress.state = 10, "done"
    rollouts.report(progress)
    rollouts.report(RolloutProgress(generation=4, version="20261201T100000000000Z", host="w0"))
    live = rollouts.live()
    assert [r["host"] for r in live] == ["w0", "w1"]
    assert live[1]["state"] == "done" and live[1]["bytes_fetched"] == 10 and live[1]["updated_at"]
