"""Mixed versions: workers advertise their features, and a request that needs one an older
live pool lacks is a 503 ``feature_unavailable`` at once (recsys.protocol, recsys_api.features)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import pytest

from recsys import __version__, protocol
from recsys.cluster import WORKER_PREFIX, Heartbeats, WorkerInfo
from recsys.errors import FeatureUnavailable
from recsys.kv import MemoryKV
from recsys_api.features import FeatureGate, worker_pools

TEXT = "Neural networks classify images."


def old_beat(kv, host="old-host", pid=1, queues=("recsys.requests",)):
    """The heartbeat of a worker of the version before API 1.1: no protocol, no features."""
    beat = {"host": host, "pid": pid, "queues": list(queues), "generation": 1, "version": "v1", "engine": "stub",
            "data_dir": "/data", "started_at": "2026-12-01T00:00:00.000000Z", "seen_at": "2026-12-01T00:00:05Z"}
    kv.set(f"{WORKER_PREFIX}{host}:{pid}", json.dumps(beat), ttl=15)


def new_beat(kv, host="new-host", pid=2, queues=("recsys.requests",), features=None):
    info = WorkerInfo(host=host, pid=pid, queues=list(queues), generation=1, version="v1")
    if features is not None:
        info.features = sorted(features)
    Heartbeats(kv, 5).beat(info)


def post(h, body):
    return h.client.simulate_post("/v1/recommendations", json=body)


# -- what a request needs ------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "needed"), [
    ({"text": TEXT}, set()),
    ({"text": TEXT, "lexical_weight": 0.3}, {"lexical_weight"}),
    ({"text": TEXT, "lexical_weight": 0}, {"lexical_weight"}),  # 0 is a weight: dense only
    ({"text": TEXT, "lexical_weight": None}, set()),
    ({"text": TEXT, "like": ["p1"], "unlike": []}, {"like"}),
    ({"text": TEXT, "offset": 0, "diversity": 0}, set()),  # the defaults: an older worker answers them right
    ({"text": TEXT, "offset": 10, "diversity": 0.5, "min_score": 0.2}, {"offset", "diversity", "min_score"}),
])
def test_a_request_needs_the_features_of_the_fields_it_sets(body, needed):
    assert protocol.needed_features(body) == needed


def test_a_batch_needs_batch_and_the_features_of_its_queries():
    body = {"queries": [{"text": TEXT}, {"text": TEXT, "like": ["p1"]}, {"publication_id": "p2", "offset": 5}]}

    assert protocol.needed_features(body, batch=True) == {"batch", "like", "offset"}
    assert protocol.needed_features({"queries": []}, batch=True) == {"batch"}


def test_every_needed_feature_is_a_known_one_and_the_workers_features_are_known_too():
    body = {name: 1 for name in protocol.FEATURES}
    assert protocol.needed_features(body) | {"batch"} == set(protocol.FEATURES)
    assert protocol.WORKER_FEATURES <= set(protocol.FEATURES)
    assert "lexical_weight" in protocol.WORKER_FEATURES


# -- what a worker advertises --------------------------------------------------------------------


def test_a_heartbeat_advertises_the_protocol_the_features_and_the_recsys_version():
    kv = MemoryKV()
    Heartbeats(kv, 5).beat(WorkerInfo(host="w1", pid=7))

    [beat] = Heartbeats(kv, 5).live()

    assert beat["protocol"] == protocol.PROTOCOL_VERSION == 2
    assert beat["features"] == sorted(protocol.WORKER_FEATURES)
    assert beat["recsys_version"] == __version__
    assert protocol.heartbeat_features(beat) == protocol.WORKER_FEATURES


def test_a_heartbeat_without_features_supports_none():
    kv = MemoryKV()
    old_beat(kv)

    [beat] = Heartbeats(kv, 5).live()

    assert protocol.heartbeat_features(beat) == frozenset()
    assert protocol.heartbeat_features({"features": "lexical_weight"}) == frozenset()  # not a list


def test_pools_group_a_hosts_processes_of_one_version_and_skip_build_only_workers():
    kv = MemoryKV()
    old_beat(kv, pid=1)
    old_beat(kv, pid=2)
    old_beat(kv, host="builder", queues=("recsys.builds",))
    new_beat(kv)

    pools = worker_pools(Heartbeats(kv, 5).live(), "recsys.requests")

    assert pools == [
        {"host": "new-host", "recsys_version": __version__, "protocol": 2,
         "features": sorted(protocol.WORKER_FEATURES), "workers": 1},
        {"host": "old-host", "recsys_version": None, "protocol": 1, "features": [], "workers": 2},
    ]


# -- the gate ------------------------------------------------------------------------------------


def test_the_gate_names_the_features_and_the_pools_lacking_them():
    kv = MemoryKV()
    old_beat(kv)
    new_beat(kv, features={"lexical_weight", "like"})
    gate = FeatureGate(Heartbeats(kv, 5), "recsys.requests")

    gate.require(set())  # nothing needed: always fine
    with pytest.raises(FeatureUnavailable) as caught:
        gate.require({"like", "offset"})

    error = caught.value
    assert error.features == ["like", "offset"]
    assert [(p["host"], p["lacking"]) for p in error.pools] == [("new-host", ["offset"]),
                                                                 ("old-host", ["like", "offset"])]
    assert "'like', 'offset'" in error.message and "old-host" in error.message
    assert "upgrade the workers first" in error.message


def test_without_live_workers_the_gate_lets_the_request_through():
    FeatureGate(Heartbeats(MemoryKV(), 5), "recsys.requests").require({"like"})


def test_the_gate_reads_the_heartbeats_at_most_once_per_max_age():
    kv, now = MemoryKV(), [100.0]
    gate = FeatureGate(Heartbeats(kv, 5), "recsys.requests", max_age=1.0, clock=lambda: now[0])
    gate.require({"lexical_weight"})  # no worker yet: read, and remembered
    old_beat(kv)

    gate.require({"lexical_weight"})  # within max_age: the old pool is not seen yet
    now[0] += 1.0
    with pytest.raises(FeatureUnavailable):
        gate.require({"lexical_weight"})


# -- the endpoint --------------------------------------------------------------------------------


def test_an_old_pool_makes_a_lexical_weight_request_a_503_at_once(harness):
    # Given an engine, and a live worker pool of the version before API 1.1
    harness.install()
    old_beat(harness.kv, pid=11)
    old_beat(harness.kv, pid=12)

    # When a request uses lexical_weight
    started = time.monotonic()
    response = post(harness, {"text": TEXT, "lexical_weight": 0.2})

    # Then it is refused at once, naming the feature and the pool, and nothing is sent
    assert time.monotonic() - started < harness.settings.request_timeout
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    body = response.json
    assert (body["code"], body["title"]) == ("feature_unavailable", "Feature unavailable")
    assert body["features"] == ["lexical_weight"]
    assert body["pools"] == [{"host": "old-host", "recsys_version": None, "protocol": 1, "workers": 2,
                              "lacking": ["lexical_weight"]}]
    assert "'lexical_weight'" in body["description"] and "old-host" in body["description"]
    assert harness.actors.requests == []


def test_an_old_pool_still_serves_requests_that_need_no_new_feature(harness):
    harness.install()
    old_beat(harness.kv)

    response = post(harness, {"text": TEXT, "lexical_weight": None})

    assert response.status_code == 200
    assert len(harness.actors.requests) == 1


def test_upgraded_workers_serve_a_lexical_weight_request(harness):
    harness.install()
    new_beat(harness.kv)
    old_beat(harness.kv, queues=("recsys.builds",))  # an old builder does not take requests

    response = post(harness, {"text": TEXT, "lexical_weight": 0.2})

    assert response.status_code == 200
    assert harness.actors.requests[0]["lexical_weight"] == 0.2


def test_the_workers_endpoint_shows_each_workers_protocol_and_features(harness):
    old_beat(harness.kv)
    new_beat(harness.kv)

    workers = {w["host"]: w for w in harness.client.simulate_get("/v1/workers").json["workers"]}

    assert (workers["old-host"]["protocol"], workers["old-host"]["features"]) == (1, [])
    assert workers["old-host"]["recsys_version"] is None
    assert workers["new-host"] == workers["new-host"] | {
        "protocol": 2, "features": sorted(protocol.WORKER_FEATURES), "recsys_version": __version__}
    assert set(asdict(WorkerInfo())) >= {"protocol", "features", "recsys_version"}


def test_the_gate_lets_a_request_through_when_redis_is_down():
    class DownKV(MemoryKV):
        def scan(self, prefix):
            from recsys.errors import Unavailable

            raise Unavailable("Redis at 127.0.0.1:1 is unreachable")

    FeatureGate(Heartbeats(DownKV(), 5), "recsys.requests").require({"like"})  # the send reports the outage
