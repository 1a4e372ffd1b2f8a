"""The API under gunicorn with real RabbitMQ, Redis and a dramatiq worker (lexical engine).

The tests run in order on one stack: the API's start step sends the first build, the
worker builds and uploads it; then uploads, rollbacks and their convergence.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import httpx
import pytest

from recsys.archive import verify
from recsys.build import build_archive
from recsys.config import Settings
from recsys.registry import Registry
from recsys.testing import sample_publications
from tests.integration.api.stack import AUTH
from tests.support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXT = "Convolutional neural networks for image classification."


def workers(stack) -> dict:
    response = stack.api.client.get("/v1/workers")
    assert response.status_code == 200, response.text
    return response.json()


def wait_converged(stack, generation: int, timeout: float = 120) -> dict:
    def check():
        body = workers(stack)
        return body if body["converged"] and body["generation"] == generation else None

    try:
        return wait_until(check, timeout=timeout, what=f"every worker to serve generation {generation}")
    except AssertionError:
        print(stack.logs())
        raise


def new_archive(folder: Path) -> Path:
    out = folder / f"built-{time.monotonic_ns()}.zip"
    return build_archive(sample_publications(), out, engine="lexical", registry=Registry.discover(),
                         settings=Settings()).path


def upload(stack, path: Path, headers: dict[str, str] | None = None) -> httpx.Response:
    auth = AUTH if headers is None else headers
    return stack.api.client.put("/v1/engine/archive", content=path.read_bytes(),
                                headers={"Content-Type": "application/zip", **auth})


def test_the_first_engine_is_built_at_start_and_every_worker_converges(stack):
    body = wait_converged(stack, 1, timeout=180)

    assert body["workers"]
    engine = stack.api.client.get("/v1/engine").json()
    assert engine["engine"] == "lexical"
    assert engine["generation"] == 1


def test_a_recommendation_round_trip(stack):
    wait_converged(stack, 1, timeout=180)

    response = stack.api.client.post("/v1/recommendations", json={"text": TEXT, "k": 3})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["engine"]["name"] == "lexical"
    assert body["engine"]["generation"] == 1
    assert 1 <= len(body["recommendations"]) <= 3
    assert all(r["evidence"] for r in body["recommendations"])


def chunks(data: bytes, size: int = 1000):
    """The body as an iterator: httpx sends it with Transfer-Encoding: chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_a_chunked_body_is_read_like_any_other_and_413_past_the_limit(stack):
    # Given gunicorn (gthread), which ends wsgi.input where a chunked body ends
    body = json.dumps({"text": TEXT, "k": 2}).encode()

    # When a valid body comes in chunks, it is answered as with Content-Length
    response = stack.api.client.post("/v1/recommendations", content=chunks(body),
                                     headers={"Content-Type": "application/json"})
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 200, response.text
    assert len(response.json()["recommendations"]) == 2

    # and a 10 MB chunked body is 413, not "empty"
    big = json.dumps({"text": "x" * 10_000_000}).encode()
    response = stack.api.client.post("/v1/recommendations", content=chunks(big, 64 * 1024),
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert "larger than 1048576 bytes" in response.json()["description"]

    # and a chunked body that breaks a rule says which
    response = stack.api.client.post("/v1/recommendations", content=chunks(b'{"text": "a", "k": 1, "k": 2}', 7),
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "has the key 'k' twice" in response.json()["description"]


def test_async_mode_and_polling(stack):
    response = stack.api.client.post("/v1/recommendations", json={"text": TEXT, "k": 2},
                                     headers={"Prefer": "respond-async"})

    assert response.status_code == 202
    url = response.headers["location"]
    assert url == response.json()["status_url"]
    status = wait_until(lambda: (s := stack.api.client.get(url).json())["status"] != "pending" and s,
                        timeout=30, what="the task to finish")
    assert status["status"] == "succeeded"
    assert len(status["result"]["recommendations"]) == 2


def test_an_unknown_publication_is_404(stack):
    response = stack.api.client.post("/v1/recommendations", json={"publication_id": "no-such-publication"})

    assert response.status_code == 404
    assert response.json()["code"] == "unknown_publication"


def test_like_offset_and_a_batch_through_the_real_stack(stack):
    wait_converged(stack, 1, timeout=180)
    client = stack.api.client
    whole = client.post("/v1/recommendations", json={"text": TEXT, "k": 6}).json()["recommendations"]
    ids = [r["publication_id"] for r in whole]

    page = client.post("/v1/recommendations", json={"text": TEXT, "k": 2, "offset": 2})
    assert page.status_code == 200, page.text
    assert [r["publication_id"] for r in page.json()["recommendations"]] == ids[2:4]
    liked = client.post("/v1/recommendations", json={"like": [{"publication_id": ids[0]}, {"text": TEXT}]})
    assert liked.status_code == 200, liked.text
    assert ids[0] not in [r["publication_id"] for r in liked.json()["recommendations"]]
    unknown = client.post("/v1/recommendations", json={"like": [{"publication_id": "no-such-publication"}]})
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_publication"

    batch = client.post("/v1/recommendations/batch", json={"queries": [
        {"text": TEXT, "k": 6}, {"text": TEXT, "k": 0}, {"like": [{"publication_id": "no-such-publication"}]},
    ]})
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["publication_id"] for r in results[0]["recommendations"]] == ids
    assert results[1]["error"]["code"] == "bad_request" and results[1]["error"]["field"] == "k"
    assert results[2]["error"]["code"] == "unknown_publication"
    assert client.post("/v1/recommendations/batch", json={"queries": []}).status_code == 400


def test_upload_broadcast_converge_then_older_corrupt_and_unauthenticated_uploads_are_refused(stack, tmp_path):
    older, newer = new_archive(tmp_path), new_archive(tmp_path)

    # An upload becomes current with the next generation, and the broadcast reaches the workers
    installed = upload(stack, newer)
    assert installed.status_code == 201, installed.text
    assert installed.json()["generation"] == 2
    wait_converged(stack, 2)
    answer = stack.api.client.post("/v1/recommendations", json={"text": TEXT, "strict": True}).json()
    assert answer["engine"]["version"] == installed.json()["version"]

    # An older build is refused; a corrupt one too; the current one stays
    assert upload(stack, older).status_code == 409
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(newer.read_bytes()[: newer.stat().st_size // 2])
    refused = upload(stack, corrupt)
    assert refused.status_code == 400, refused.text
    assert upload(stack, newer, headers={}).status_code == 401
    assert upload(stack, newer, headers={"Authorization": "Bearer wrong"}).status_code == 401
    current = stack.api.client.get("/v1/engine").json()
    assert (current["generation"], current["version"]) == (2, installed.json()["version"])


def test_download_streams_the_archive_and_if_none_match_gives_304(stack):
    current = stack.api.client.get("/v1/engine").json()

    with stack.api.client.stream("GET", "/v1/engine/archive") as response:
        data = b"".join(response.iter_bytes())
        assert response.status_code == 200
        assert response.headers["etag"] == f'"{current["version"]}"'
        assert response.headers["x-recsys-sha256"] == hashlib.sha256(data).hexdigest()
    assembled = stack.api.client.get("/v1/engine").json()
    assert (assembled["size"], assembled["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    not_modified = stack.api.client.get("/v1/engine/archive", headers={"If-None-Match": f'"{current["version"]}"'})
    assert not_modified.status_code == 304


def test_rollback_is_broadcast_and_workers_converge_on_it(stack):
    first = stack.api.client.get("/v1/engine").json()

    response = stack.api.client.post("/v1/engine/rollback", headers=AUTH)

    assert response.status_code == 200, response.text
    assert response.json()["generation"] == first["generation"] + 1
    wait_converged(stack, first["generation"] + 1)


def test_a_chunked_upload_installs_like_any_other(stack, tmp_path):
    before = stack.api.client.get("/v1/engine").json()
    archive = new_archive(tmp_path)

    # When a client uploads the archive with Transfer-Encoding: chunked (no Content-Length)
    response = stack.api.client.put("/v1/engine/archive", content=chunks(archive.read_bytes(), 64 * 1024),
                                    headers={"Content-Type": "application/zip", **AUTH})

    # Then it is installed as the next generation, checked like any other
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 201, response.text
    assert response.json()["generation"] == before["generation"] + 1
    assert response.json()["manifest_sha256"] == verify(archive).manifest_sha256
    wait_converged(stack, before["generation"] + 1)


def test_metrics_sum_every_gunicorn_process(stack):
    before = _count(stack.api.client.get("/metrics").text)
    for _ in range(20):  # spread over both worker processes by the kernel
        assert stack.api.client.get("/health").status_code == 200

    text = stack.api.client.get("/metrics").text

    assert _count(text) == before + 20
    assert re.search(r"^recsys_engine_generation \d", text, re.M)


def _count(text: str) -> float:
    found = re.search(r'^recsys_api_requests_total\{method="GET",route="/health",status="200"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0
