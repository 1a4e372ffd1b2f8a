"""GET /health, /ready, /metrics, /docs and its assets; error bodies; no torch in the API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.errors import Unavailable
from recsys_api.app import create_app
from recsys_api.resources.docs import swagger_ui_folder

from .test_unavailable import FlakyKV

ROOT = Path(__file__).resolve().parents[3]


def test_health_is_ok(harness):
    response = harness.client.simulate_get("/health")

    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_ready_is_200_when_broker_results_and_engine_are_there(harness):
    installed = harness.install()

    response = harness.client.simulate_get("/ready")

    assert response.status_code == 200
    assert response.json["status"] == "ready"
    assert response.json["checks"]["engine"] == {"ok": True, "generation": 1, "version": installed.version}
    assert response.json["checks"]["results"] == {"ok": True}


def test_ready_is_503_listing_every_failing_check(make_harness):
    kv = FlakyKV()
    h = make_harness(create=False, kv=kv)

    def broker_down():
        raise Unavailable("RabbitMQ is unreachable (AMQPConnectionError: refused)")

    h.app = create_app(h.settings, broker=h.broker, result_backend=h.backend, kv=kv, archive_store=h.store,
                       broadcaster=h.broadcaster, registry_records=[], broker_check=broker_down)
    kv.down = True

    response = h.client.simulate_get("/ready")

    assert response.status_code == 503
    checks = response.json["checks"]
    assert {name for name, check in checks.items() if not check["ok"]} == {"broker", "results", "engine"}
    assert "RabbitMQ is unreachable" in response.json["description"]
    assert "Redis" in checks["results"]["error"]
    assert "no engine has been installed yet" in checks["engine"]["error"]


def metric(text, name, **labels):
    """The value of one sample in Prometheus text, or None."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if match and match[1] == name and ",".join(sorted((match[2] or "").split(","))) == wanted:
            return float(match[3])
    return None


def test_metrics_count_requests_by_route_template_and_status(harness):
    harness.client.simulate_get("/v1/tasks/a")
    harness.client.simulate_get("/v1/tasks/b")
    harness.client.simulate_post("/v1/recommendations", json={"text": "x"})
    harness.client.simulate_get("/no/such/path")

    text = harness.client.simulate_get("/metrics").text

    assert metric(text, "recsys_api_requests_total", method="GET", route="/v1/tasks/{task_id}", status="404") == 2
    assert metric(text, "recsys_api_requests_total", method="POST", route="/v1/recommendations", status="200") == 1
    assert metric(text, "recsys_api_requests_total", method="GET", route="unmatched", status="404") == 1
    assert metric(text, "recsys_api_request_duration_seconds_count", method="GET", route="/v1/tasks/{task_id}") == 2
    assert metric(text, "recsys_api_waits_in_flight") == 0
    assert metric(text, "recsys_engine_generation") is None  # no engine yet


def test_metrics_show_the_current_engine(harness):
    installed = harness.install()

    text = harness.client.simulate_get("/metrics").text

    assert metric(text, "recsys_engine_generation") == 1
    assert metric(text, "recsys_engine_info", engine="stub", version=installed.version,
                  created_at=installed.manifest.created_at) == 1


def test_metrics_count_a_wait_in_flight_while_a_request_waits(harness):
    seen = []

    def observe(request):
        seen.append(metric(harness.client.simulate_get("/metrics").text, "recsys_api_waits_in_flight"))
        return {"engine": {"name": "stub", "version": "v"}, "recommendations": []}

    harness.actors.recommend = observe
    harness.client.simulate_post("/v1/recommendations", json={"text": "x"})

    assert seen == [1]


def test_docs_serves_swagger_ui_from_the_api_itself(harness):
    page = harness.client.simulate_get("/docs")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert links and all(not link.startswith(("http:", "https:", "//")) for link in links)
    for link in links:  # relative to /docs: every asset is served here
        asset = harness.client.simulate_get("/" + link)
        assert asset.status_code == 200, link
        assert asset.content


def test_the_swagger_initializer_loads_our_spec_without_the_online_validator(harness):
    script = harness.client.simulate_get("/docs/ui/init.js").text

    assert 'url: "openapi.json"' in script
    assert "validatorUrl: null" in script


def test_the_assets_are_swagger_ui_4_15_5(harness):
    assert swagger_ui_folder().name == "swagger-ui-4.15.5"
    assert harness.client.simulate_get("/docs/assets/swagger-ui-bundle.js").status_code == 200


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere"), ("DELETE", "/v1/engine"), ("PATCH", "/health")])
def test_falcons_own_errors_are_json_with_a_description(harness, method, path):
    response = harness.client.simulate_request(method, path, headers={"Accept": "application/xml"})

    assert response.status_code in (404, 405)
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json) >= {"title", "description"}
    assert response.json["description"]


def test_an_unexpected_exception_is_a_json_500_and_is_logged(harness, monkeypatch, caplog):
    def broken():
        raise KeyError("boom")

    monkeypatch.setattr(harness.store, "current", broken)

    response = harness.client.simulate_get("/v1/engine")

    assert response.status_code == 500
    assert response.json["title"] == "Internal error"
    assert "see the API's logs" in response.json["description"]
    assert "KeyError" in caplog.text


def test_importing_the_api_and_building_its_app_does_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from dramatiq.brokers.stub import StubBroker\n"
        "from recsys.config import Settings\n"
        "from recsys.kv import MemoryKV\n"
        "from recsys_api import create_app\n"
        "from dramatiq.results.backends import StubBackend\n"
        "from recsys_api.services import open_archive_store\n"
        "from recsys_api.broadcast import BrokerBroadcaster\n"
        f"settings = Settings(data_dir=Path({str(tmp_path)!r}))\n"
        "broker = StubBroker()\n"
        "app = create_app(settings, broker=broker, result_backend=StubBackend(), kv=MemoryKV(),\n"
        "                 archive_store=open_archive_store(settings),\n"
        "                 broadcaster=BrokerBroadcaster(broker, settings.broadcast_exchange))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "               ('torch', 'sentence_transformers', 'annoy', 'recsys_workers', 'onnxruntime')\n"
        "               or m.startswith('recsys_engine_'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
