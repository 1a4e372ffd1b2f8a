"""Rollout with real processes: two pools started with `dramatiq recsys_workers
--processes 2 --threads 2`, each with its own data dir (a machine), real RabbitMQ and
Redis, and a fake API. Every test starts from a converged cluster (both pools up,
serving the API's current engine) and leaves the pools running."""

from __future__ import annotations

import hashlib
import random
import re
import threading

import pytest

from recsys.cluster import Rollouts
from recsys.kv import RedisKV
from tests.integration.workers.cluster import (
    EXCHANGE,
    broadcast_queues,
    close_connections,
    list_queues,
    serving,
)
from tests.support.processes import wait_until

MB = 1 << 20

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUERY = {"text": "Dark matter halos around dwarf galaxies and star formation in spiral arms.", "k": 3}


def pids(beats):
    return sorted(b["pid"] for b in beats)


def rollout_reports(cluster) -> list[dict]:
    """The last rollout report of each machine (pool: one data dir each)."""
    kv = RedisKV(cluster.redis_url)
    try:
        return Rollouts(kv).live()
    finally:
        kv.close()


def rollout_report(cluster, pool) -> dict:
    """The last rollout report of ``pool``'s machine."""
    (report,) = [r for r in rollout_reports(cluster) if str(pool.data_dir) in str(r["data_dir"])]
    return report


def test_one_broadcast_is_handled_once_by_every_process_and_downloaded_once_per_machine(cluster):
    cluster.converge()
    cluster.api.file_requests.clear()
    pulls = cluster.api.pulls
    # When the API makes a new version current (another corpus: changed files) and broadcasts it
    stored = cluster.api.publish(cluster.archive(count=15))
    cluster.broadcast(stored)
    # Then every process of both machines serves it
    beats = cluster.wait_serving(stored.generation)
    assert {b["version"] for pool in beats.values() for b in pool} == {stored.version}
    # Each machine fetched it once: its manifest and each file it lacked once per machine,
    # whichever of its two processes did, and no full archive
    assert cluster.api.pulls - pulls == 2
    assert cluster.api.file_requests[stored.manifest_sha256] == 2
    assert set(cluster.api.file_requests.values()) == {2}, cluster.api.file_requests
    for pool in cluster.pools.values():  # each machine reports its own rollout
        report = rollout_report(cluster, pool)
        assert (report["state"], report["generation"]) == ("done", stored.generation), report
    # And each of the 4 processes handled the broadcast exactly once
    pattern = rf"engine_updated generation {stored.generation} \(version {re.escape(stored.version)}\)"
    for name, pool_beats in beats.items():
        pool = cluster.pools[name]
        handled = wait_until(lambda p=pool, b=pool_beats: (c := p.handled(pattern)) and set(c) == set(pids(b))
                             and c, what=f"pool {name}'s processes to log the broadcast")
        assert sorted(handled.values()) == [1, 1], handled
    # And a recommendation is answered by the new engine
    message = cluster.send("recommend", "recsys.requests", dict(QUERY, min_generation=stored.generation))
    result = cluster.result(message)
    assert result["engine"] == {"name": "lexical", "version": stored.version, "generation": stored.generation}
    assert result["recommendations"]


def test_a_broadcast_of_an_older_generation_changes_nothing(cluster):
    current = cluster.converge()
    pulls = cluster.api.pulls
    older = cluster.api.archives[next(iter(cluster.api.archives))]
    assert older.generation < current.generation
    cluster.broadcast(older)
    pattern = rf"engine_updated generation {older.generation} .*nothing to do"
    for pool in cluster.running():
        wait_until(lambda p=pool: sum(p.handled(pattern).values()) >= p.processes,
                   what=f"pool {pool.name} to ignore the old broadcast")
        assert serving(cluster.redis_url, pool, current.generation)
    assert cluster.api.pulls == pulls


def test_a_broadcast_failing_its_checksum_leaves_the_old_engine_serving_and_says_why(cluster):
    current = cluster.converge()
    # Given an API whose new files arrive corrupted (other bytes under their names)
    bad = cluster.api.publish(cluster.archive(count=12))
    for sha in bad.files.values():
        cluster.api.corrupt[sha] = bytes(len(cluster.api.blobs[sha]))
    try:
        cluster.broadcast(bad)
        pattern = rf"engine_updated generation {bad.generation} .*NOT installed.*do not match its name"
        for pool in cluster.running():
            wait_until(lambda p=pool: sum(p.handled(pattern).values()) >= p.processes,
                       what=f"pool {pool.name} to refuse the corrupt archive")
            # Then every process still serves the old engine, and answers with it
            assert serving(cluster.redis_url, pool, current.generation)
            assert re.search(r"keeps serving generation \d+", pool.text())
        message = cluster.send("recommend", "recsys.requests", QUERY)
        assert cluster.result(message)["engine"]["version"] == current.version
    finally:
        cluster.api.corrupt.clear()
    cluster.converge()  # the intact files install fine afterwards


def test_a_killed_pool_leaves_no_queue_behind_and_catches_up_when_restarted(cluster):
    cluster.converge()
    pool_a, pool_b = cluster.pools["a"], cluster.pools["b"]
    b_pids = pids(serving(cluster.redis_url, pool_b, cluster.api.current.generation))
    assert len(broadcast_queues(cluster.rabbitmq_url)) == 4

    # When pool a is killed with SIGKILL
    pool_a.kill9()

    # Then within seconds only pool b's two broadcast queues are left
    def owners():
        return sorted(int(name.split(".")[-2]) for name in broadcast_queues(cluster.rabbitmq_url))

    wait_until(lambda: owners() == b_pids, timeout=20, what="pool a's broadcast queues to disappear")
    # And the broadcast never made a durable queue (no .DQ/.XQ companions either)
    durable = sorted(q["name"] for q in list_queues(cluster.rabbitmq_url) if q["durable"])
    assert not [name for name in durable if name.startswith(EXCHANGE)], durable

    # When the API moves on without a broadcast reaching pool a, and a restarts
    newer = cluster.api.publish(cluster.archive())
    pool_a.restart()
    # Then it catches up by itself (pool b, without a broadcast, stays where it was)
    cluster.wait_serving(newer.generation, [pool_a])
    assert serving(cluster.redis_url, pool_b, newer.generation - 1)
    cluster.converge()


def test_workers_cut_off_from_rabbitmq_catch_up_when_they_reconnect(cluster):
    current = cluster.converge()
    # Given a rollout whose broadcast nobody received
    newer = cluster.api.publish(cluster.archive())
    assert newer.generation == current.generation + 1
    # When RabbitMQ drops every connection, and the workers reconnect (3 s later)
    close_connections(cluster.rabbitmq_url)
    # Then each process rebinds its broadcast queue, asks the API and follows it
    cluster.wait_serving(newer.generation)
    for pool in cluster.running():
        assert sum(pool.handled(r"broadcast queue \S+ bound").values()) >= 2 * pool.processes


def test_a_recommend_on_a_killed_pool_is_answered_by_another_pool(cluster, tmp_path):
    # Given the cluster on the gated test engine, pool b stopped, and pool a whose
    # recommend blocks (its gate never opens)
    gated = cluster.api.publish(cluster.archive(engine="gated"))
    cluster.converge()
    pool_a, pool_b = cluster.pools["a"], cluster.pools["b"]
    pool_b.stop()
    started = tmp_path / "recommend-started"
    pool_a.restart(TESTENGINE_RECOMMEND_GATE=str(tmp_path / "never"), TESTENGINE_RECOMMEND_STARTED=str(started))
    cluster.wait_serving(gated.generation, [pool_a])
    # When a recommend is taken by pool a
    message = cluster.send("recommend", "recsys.requests", QUERY)
    wait_until(started.exists, what="pool a to start the recommend")
    # And pool b comes up, then pool a is killed with the message unacknowledged
    pool_b.restart()
    cluster.wait_serving(gated.generation, [pool_b])
    pool_a.kill9()
    # Then pool b answers it
    result = cluster.result(message, timeout=60)
    assert result["engine"]["version"] == gated.version
    assert result["recommendations"]
    pool_a.restart()
    cluster.converge()


def test_a_pool_killed_during_a_download_serves_on_then_resumes_it(cluster):
    current = cluster.converge()
    pool_a, pool_b = cluster.pools["a"], cluster.pools["b"]
    # Given a new version with a 3 MiB file whose download stalls after 2 MiB
    padding = random.Random(7).randbytes(3 * MB)
    big = hashlib.sha256(padding).hexdigest()
    gate = threading.Event()
    cluster.api.stall[big] = (2 * MB + 100, gate)
    cluster.api.ranges.clear()
    partial = pool_a.data_dir / "engines" / "blobs" / ".partial" / big
    try:
        newer = cluster.api.publish(cluster.archive(padding=padding))
        cluster.broadcast(newer)
        wait_until(lambda: partial.exists() and partial.stat().st_size >= 2 * MB,
                   what="pool a to have 2 MiB of the file on disk")
        # Then while it downloads every process serves the engine in service
        for pool in (pool_a, pool_b):
            assert serving(cluster.redis_url, pool, current.generation)
        report = rollout_report(cluster, pool_a)
        assert (report["state"], report["generation"]) == ("fetching", newer.generation)
        assert report["bytes_needed"] >= 3 * MB
        # When pool a is killed in the middle of it
        pool_a.kill9()
    finally:
        del cluster.api.stall[big]
        gate.set()
    cluster.wait_serving(newer.generation, [pool_b])
    # Then the restarted pool catches up by asking only for the rest of the file
    pool_a.restart()
    cluster.wait_serving(newer.generation, [pool_a])
    assert (big, 2 * MB) in cluster.api.ranges
    assert not partial.exists()
    cluster.converge()


def test_a_first_wave_api_is_followed_with_full_archives(cluster):
    cluster.converge()
    downloads = cluster.api.downloads
    cluster.api.first_wave = True
    try:
        stored = cluster.api.publish(cluster.archive(count=17))
        # A first-wave API broadcasts the archive's sha256, no manifest_sha256
        cluster.broadcast(stored, manifest_sha256=None, sha256=stored.sha256)
        cluster.wait_serving(stored.generation)
        assert cluster.api.downloads - downloads == 2  # once per machine
    finally:
        cluster.api.first_wave = False
    cluster.converge()
