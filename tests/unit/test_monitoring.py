"""deploy/'s monitoring: the Prometheus scrape config reaches the API and every worker pool,
and the Grafana dashboard (and its provisioning) only uses metrics that recsys exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from recsys.config import Settings
from recsys_api.metrics import Metrics
from recsys_workers.metrics import WorkerMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def exported_names() -> set[str]:
    class NoStore:
        def current(self):
            return None

    names = set()
    for registry in (WorkerMetrics(CollectorRegistry()).registry, Metrics(NoStore(), multiproc_dir="").registry):
        for family in registry.collect():
            names.add(family.name)
            names |= {family.name + suffix for suffix in SUFFIXES}
    names |= {"recsys_engine_generation", "recsys_engine_info"}  # the API's collector, once an engine exists
    names |= {f"recsys_worker_rollout_{kind}" for kind in ("bytes", "files", "seconds", "generation", "state")}
    return names


def test_prometheus_scrapes_the_api_and_every_worker_pool_on_the_default_port():
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    assert jobs["recsys-api"]["static_configs"] == [{"targets": ["api:8000"]}]
    workers = jobs["recsys-workers"]["dns_sd_configs"]
    assert workers == [{"names": ["worker"], "type": "A", "port": Settings().worker_metrics_port,
                        "refresh_interval": "30s"}]


def test_the_dashboard_uses_only_exported_metrics_and_the_provisioned_data_source():
    dashboard = json.loads((DEPLOY / "grafana" / "recsys-dashboard.json").read_text(encoding="utf-8"))
    source = yaml.safe_load((DEPLOY / "grafana" / "datasource.yml").read_text(encoding="utf-8"))["datasources"][0]
    exported = exported_names()

    used = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\brecsys_[a-z_]+\b", target["expr"]))
    assert used, "the dashboard queries nothing"
    assert not used - exported, f"the dashboard queries metrics nobody exports: {sorted(used - exported)}"
    assert {"recsys_worker_tasks_total", "recsys_worker_build_progress_done", "recsys_worker_rollout_bytes",
            "recsys_api_requests_total"} <= used


def test_grafana_loads_the_dashboard_from_where_compose_mounts_it():
    providers = yaml.safe_load((DEPLOY / "grafana" / "dashboards.yml").read_text(encoding="utf-8"))["providers"]
    compose = yaml.safe_load((DEPLOY / "compose.yml").read_text(encoding="utf-8"))
    mounts = dict(entry.split(":")[1::-1] for entry in compose["services"]["grafana"]["volumes"])
    assert mounts[providers[0]["options"]["path"] + "/recsys.json"] == "./grafana/recsys-dashboard.json"
