"""Builds with real processes: the cluster-wide lock, a failing source, and two
schedulers (`periodiq recsys_workers`) firing the same cron tick."""

from __future__ import annotations

import re
import threading
from datetime import datetime
from pathlib import Path

import pytest

from recsys.cluster import BuildLock
from recsys.kv import RedisKV
from tests.integration.workers.cluster import serving
from tests.support.processes import BIN, Process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def build_lock(cluster) -> BuildLock:
    return BuildLock(RedisKV(cluster.redis_url), 10)


def test_two_builds_at_once_one_builds_and_the_other_is_refused(cluster):
    current = cluster.converge()
    uploads = cluster.api.uploads
    # Given a slow publications backend
    cluster.api.publications_gate = threading.Event()
    try:
        # When two build_index messages are sent at once
        first = cluster.send("build_index", "recsys.builds")
        second = cluster.send("build_index", "recsys.builds")
        # Then one takes the lock, and the other is refused at once with the reason
        holder = wait_until(lambda: build_lock(cluster).holder(), what="a build to take the lock")
        refused_id = second.message_id if holder["message_id"] == first.message_id else first.message_id
        refused = cluster.result(first if refused_id == first.message_id else second, timeout=60)
        assert refused["error"]["code"] == "build_running"
        assert holder["host"] in refused["error"]["message"]
    finally:
        cluster.api.publications_gate.set()
        cluster.api.publications_gate = None
    built = cluster.result(second if refused_id == first.message_id else first, timeout=120)
    assert built["engine"]["generation"] == current.generation + 1, built
    assert cluster.api.uploads == uploads + 1
    # The API broadcast the upload: every process follows
    cluster.wait_serving(current.generation + 1)
    assert build_lock(cluster).holder() is None


def test_a_build_whose_source_fails_leaves_the_engine_in_service(cluster):
    current = cluster.converge()
    uploads = cluster.api.uploads
    cluster.api.publications_status = 400
    try:
        message = cluster.send("build_index", "recsys.builds")
        result = cluster.result(message, timeout=60)
    finally:
        cluster.api.publications_status = None
    assert result["error"]["code"] == "source"
    assert "400" in result["error"]["message"]
    assert cluster.api.uploads == uploads
    for pool in cluster.running():
        assert serving(cluster.redis_url, pool, current.generation)
        builds = pool.data_dir / "builds"
        assert not builds.exists() or not list(builds.iterdir()), "temporary files are deleted"
    assert build_lock(cluster).holder() is None


def test_two_schedulers_firing_one_tick_start_one_build(cluster, tmp_path: Path):
    current = cluster.converge()
    uploads = cluster.api.uploads
    # Given two schedulers running by mistake, with a tick every minute
    env = dict(cluster.env, RECSYS_REBUILD_CRON="* * * * *")
    schedulers = [Process(f"periodiq-{n}", [str(BIN / "periodiq"), "recsys_workers"], env, tmp_path,
                          tmp_path / f"periodiq-{n}.log") for n in (1, 2)]
    cluster.others.extend(schedulers)
    # periodiq sends a tick at start (or at the next minute after second 55): start both
    # well inside one minute so that their first ticks are the same tick
    wait_until(lambda: datetime.now().second < 45, timeout=30, interval=0.5, what="the start of a minute")
    for scheduler in schedulers:
        scheduler.start()

    def tick_outcomes():
        text = "".join(pool.text() for pool in cluster.pools.values())
        sent = re.findall(r"scheduled build of (\S+): sent build_index", text)
        duplicate = re.findall(r"scheduled build of (\S+): another scheduler's message already took", text)
        return (sent, duplicate) if sent and duplicate else None

    # When the next minute's tick reaches the workers from both schedulers
    sent, duplicate = wait_until(tick_outcomes, timeout=150, interval=1, what="both schedulers' first tick")
    for scheduler in schedulers:
        scheduler.stop()
    # Then one message started a build and the other was a duplicate of the same tick
    assert len(sent) == 1 and duplicate == sent, (sent, duplicate)
    wait_until(lambda: cluster.api.uploads > uploads, timeout=120, what="the scheduled build's upload")
    cluster.wait_serving(current.generation + 1)
    wait_until(lambda: build_lock(cluster).holder() is None, what="the build lock to be released")
    assert cluster.api.uploads == uploads + 1
    for scheduler in schedulers:
        assert "Scheduling" in scheduler.text() and "scheduled_build" in scheduler.text()
