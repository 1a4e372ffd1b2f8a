"""The operator console: the page and its assets (all served here, nothing external), and
GET /v1/console/state over the harness's MemoryKV, archive store and StubBroker."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from recsys.cluster import BuildLock, Heartbeats, RolloutProgress, Rollouts, WorkerInfo
from recsys.progress import BuildHistory, ProgressRecorder, ProgressStore
from recsys_api.openapi import build_spec
from recsys_api.resources.console import CONSOLE_FOLDER, CSP

from .conftest import AUTH


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validator(name: str) -> jsonschema.Draft4Validator:
    spec = build_spec()

    def convert(node):
        if isinstance(node, dict):
            node = {k: convert(v) for k, v in node.items()}
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            if "$ref" in node:
                node["$ref"] = node["$ref"].replace("#/components/schemas/", "#/definitions/")
            return node
        if isinstance(node, list):
            return [convert(v) for v in node]
        return node

    definitions = convert(copy.deepcopy(spec["components"]["schemas"]))
    return jsonschema.Draft4Validator({"$ref": f"#/definitions/{name}", "definitions": definitions})


# -- the page ------------------------------------------------------------------------


def test_the_page_needs_no_token_and_allows_only_this_api(harness):
    response = harness.client.simulate_get("/console")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CSP
    assert "connect-src 'self'" in CSP and "default-src 'none'" in CSP
    assert 'src="/console/assets/console.js"' in response.text
    assert 'href="/console/assets/console.css"' in response.text


@pytest.mark.parametrize(("name", "media_type"), [("console.js", "javascript"), ("console.css", "text/css")])
def test_the_assets_are_served_by_the_api(harness, name, media_type):
    response = harness.client.simulate_get(f"/console/assets/{name}")

    assert response.status_code == 200
    assert media_type in response.headers["content-type"]
    assert response.content == (CONSOLE_FOLDER / name).read_bytes()


def test_no_asset_refers_to_another_host():
    for path in sorted(Path(CONSOLE_FOLDER).iterdir()):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path.name
        assert "innerHTML" not in text, f"{path.name}: build nodes, never parse data as HTML"
    page = (Path(CONSOLE_FOLDER) / "index.html").read_text(encoding="utf-8")
    local = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert local and all(ref.startswith(("/console/assets/", "data:")) for ref in local), local


# -- the state -----------------------------------------------------------------------


def test_the_state_of_an_empty_cluster(harness):
    response = harness.client.simulate_get("/v1/console/state")

    assert response.status_code == 200
    state = response.json
    assert validator("ConsoleState").is_valid(state)
    assert state["engine"] == {"current": None, "previous": None}
    assert state["cluster"] == {"generation": None, "version": None, "converged": False,
                                "heartbeat_interval": harness.settings.heartbeat_interval, "machines": []}
    assert state["rollouts"] == []
    assert state["builds"] == {"running": None, "queued": None, "last": []}
    assert state["queues"]["source"] == "embedded"
    assert response.headers["cache-control"] == "no-store"


def test_the_engine_and_the_one_a_rollback_would_bring_back(harness):
    first = harness.install(minutes=0)
    second = harness.install(minutes=1)

    engine = harness.client.simulate_get("/v1/console/state").json["engine"]

    assert engine["current"]["version"] == second.version and engine["current"]["generation"] == 2
    assert engine["previous"]["version"] == first.version
    assert set(engine["current"]) >= {"engine", "version", "generation", "publications", "sentences", "created_at",
                                      "size"}
    assert engine["current"]["size"] == second.engine_bytes and engine["current"]["publications"] == 1
    assert engine["current"]["manifest_sha256"] == second.manifest_sha256
    # the quality gate's figures: these test archives compared nothing
    assert engine["current"]["quality"] is None
    assert engine["current"]["quality_gate"]["outcome"] == "not_applied"
    assert engine["previous"]["quality_gate"] == {"outcome": "not_applied", "reason": "the first engine"}


def beat(kv, interval: int, *, host: str, pid: int, data_dir: str, generation: int | None, ago: float = 0.0,
         queues: tuple[str, ...] = ("recsys.requests", "recsys.builds")) -> None:
    info = WorkerInfo(host=host, pid=pid, data_dir=data_dir, generation=generation, queues=list(queues),
                      version=None if generation is None else f"v{generation}")
    Heartbeats(kv, interval).beat(info)
    if ago:
        record = json.loads(kv.get(info.key))
        record["seen_at"] = _iso(datetime.now(UTC) - timedelta(seconds=ago))
        kv.set(info.key, json.dumps(record), ttl=3 * interval)


def test_workers_are_grouped_by_machine_and_stale_or_lagging_ones_are_marked(harness):
    harness.install()  # generation 1
    kv, interval = harness.kv, harness.settings.heartbeat_interval
    beat(kv, interval, host="h1", pid=11, data_dir="/data/a", generation=1)
    beat(kv, interval, host="h1", pid=12, data_dir="/data/a", generation=1, ago=2.5 * interval)
    beat(kv, interval, host="h1", pid=21, data_dir="/data/b", generation=None)
    beat(kv, interval, host="h2", pid=31, data_dir="/data", generation=None, queues=("recsys.builds",))
    Rollouts(kv).report(RolloutProgress(generation=1, version="v1", host="h1", data_dir="/data/b",
                                        bytes_needed=1000, bytes_fetched=250, files_needed=4, files_fetched=1))

    cluster = harness.client.simulate_get("/v1/console/state").json["cluster"]

    assert cluster["generation"] == 1 and cluster["converged"] is False
    machines = {(m["host"], m["data_dir"]): m for m in cluster["machines"]}
    assert list(machines) == [("h1", "/data/a"), ("h1", "/data/b"), ("h2", "/data")]
    a, b, builder = machines.values()
    assert [(w["pid"], w["stale"], w["lagging"]) for w in a["workers"]] == [(11, False, False), (12, True, False)]
    assert a["processes"] == 2 and a["converged"] is True and a["rollout"] is None
    assert [(w["pid"], w["lagging"]) for w in b["workers"]] == [(21, True)] and b["converged"] is False
    assert b["rollout"]["percent"] == 25.0 and b["rollout"]["state"] == "fetching"
    assert builder["workers"][0]["lagging"] is False, "a build-only worker serves no engine"


def test_rollouts_are_listed_with_their_share_fetched(harness):
    Rollouts(harness.kv).report(RolloutProgress(generation=3, version="v3", host="h9", data_dir="/d", state="done",
                                                bytes_needed=0, seconds=1.5))

    rollouts = harness.client.simulate_get("/v1/console/state").json["rollouts"]

    assert [(r["host"], r["state"], r["percent"], r["seconds"]) for r in rollouts] == [("h9", "done", 100.0, 1.5)]


def test_the_running_build_shows_its_progress_and_the_history_its_outcomes(harness):
    lock = BuildLock(harness.kv, harness.settings.build_lock_ttl)
    lock.acquire(message_id="build-2", engine="lexical", host="builder", pid=7)
    progress = ProgressRecorder(ProgressStore(harness.kv, 60), "build-2", interval=0.0)
    progress("encode", 250, 1000)
    BuildHistory(harness.kv).add({"task_id": "build-1", "outcome": "succeeded", "seconds": 12.5,
                                  "engine": {"name": "lexical", "version": "v", "generation": 1}})

    builds = harness.client.simulate_get("/v1/console/state").json["builds"]

    running = builds["running"]
    assert (running["task_id"], running["host"], running["pid"], running["engine"]) == ("build-2", "builder", 7,
                                                                                        "lexical")
    assert "token" not in running
    assert {k: running["progress"][k] for k in ("stage", "done", "total")} == {"stage": "encode", "done": 250,
                                                                             "total": 1000}
    assert [b["task_id"] for b in builds["last"]] == ["build-1"]


def test_a_queued_build_is_shown_until_it_starts(harness):
    response = harness.client.simulate_post("/v1/engine/builds", headers=AUTH)
    assert response.status_code == 202

    builds = harness.client.simulate_get("/v1/console/state").json["builds"]

    assert builds["queued"] == response.json["task_id"]


def test_queue_counts_of_the_embedded_broker(make_harness):
    h = make_harness(worker=False)
    for n in range(3):
        h.client.simulate_post("/v1/recommendations", json={"text": f"query {n}"},
                               headers={"Prefer": "respond-async"})

    queues = h.client.simulate_get("/v1/console/state").json["queues"]

    counts = {q["name"]: q["ready"] for q in queues["queues"]}
    assert queues["source"] == "embedded" and queues["error"] is None
    assert counts[h.settings.request_queue] == 3
    assert counts[h.settings.build_queue] == 0


def test_a_task_shows_the_progress_it_reports(harness):
    task_id = harness.client.simulate_post("/v1/engine/builds", headers=AUTH).json["task_id"]
    assert "progress" not in harness.client.simulate_get(f"/v1/tasks/{task_id}").json

    ProgressRecorder(ProgressStore(harness.kv, 60), task_id, interval=0.0)("fetch", 40, None)
    body = harness.client.simulate_get(f"/v1/tasks/{task_id}").json

    assert {k: body["progress"][k] for k in ("stage", "done", "total", "rate", "eta_s")} == {
        "stage": "fetch", "done": 40, "total": None, "rate": 0.0, "eta_s": None}
    assert validator("TaskStatus").is_valid(body)
