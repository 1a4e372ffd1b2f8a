"""The content-addressed engine store under gunicorn (two processes, real HTTP, sendfile):
the start engine, files and ranges, the full archive assembled once and byte-identical,
thin uploads, concurrent uploads from both processes, and a first-wave store migrated
by gunicorn's master at start. No worker pool: this is the API's half."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from recsys.archive import VerifiedArchive, pack, thin_copy, verify
from recsys.engine import EngineMetadata
from tests.integration.api.stack import AUTH, TOKEN, Api
from tests.support.processes import forget_cluster_state, recsys_env

pytestmark = [pytest.mark.integration]

BASE = datetime(2026, 11, 28, 21, 18, tzinfo=UTC)
BIG = os.urandom(3 * 1024 * 1024 + 12345)  # several of gunicorn's and our chunks, and not a multiple of them
SMALL = b'{"vocabulary": ["a", "b"]}'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(folder: Path, files: dict[str, bytes], minutes: int, leave_out=()) -> VerifiedArchive:
    content = folder / f"engine-{minutes}-{len(leave_out)}"
    for rel, data in files.items():
        (content / rel).parent.mkdir(parents=True, exist_ok=True)
        (content / rel).write_bytes(data)
    return pack(content, folder / f"{content.name}.zip", engine="lexical",
                metadata=EngineMetadata(publications=2, sentences=3), created_at=BASE + timedelta(minutes=minutes),
                leave_out=leave_out)


def api_env(folder: Path, rabbitmq_url: str, redis_url: str, **settings: str) -> dict[str, str]:
    return recsys_env(
        RECSYS_BROKER_URL=rabbitmq_url, RECSYS_RESULTS_URL=redis_url, RECSYS_API_TOKEN=TOKEN,
        RECSYS_DATA_DIR=str(folder / "api-data"), RECSYS_REQUEST_QUEUE="api-files.requests",
        RECSYS_BUILD_QUEUE="api-files.builds", RECSYS_BROADCAST_EXCHANGE="api-files.broadcast", **settings,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, VerifiedArchive]:
    folder = tmp_path_factory.mktemp("built")
    first = build(folder, {"vectors.bin": BIG, "vocab.json": SMALL}, 1)
    files = {"vectors.bin": BIG, "vocab.json": SMALL, "segment-2.bin": os.urandom(200_000)}
    second = build(folder, files, 2)
    return {"first": first, "second": second, "second_thin": thin_copy(second, folder / "thin.zip", {sha(BIG)})}


@pytest.fixture(scope="module")
def api(rabbitmq_url, redis_url, tmp_path_factory, built) -> Api:
    forget_cluster_state(redis_url)
    folder = tmp_path_factory.mktemp("api-files")
    env = api_env(folder, rabbitmq_url, redis_url, RECSYS_START_ENGINE=str(built["first"].path))
    api = Api(folder, env, workers=2, threads=4).start()
    api.store = folder / "api-data" / "archives"  # type: ignore[attr-defined]
    try:
        yield api
    finally:
        api.stop()
        api.client.close()


def test_the_start_engine_is_installed_as_content_addressed_files(api, built):
    engine = api.client.get("/v1/engine").json()

    assert engine["generation"] == 1
    assert engine["manifest_sha256"] == built["first"].manifest_sha256
    assert engine["bytes"] == len(BIG) + len(SMALL) + len(built["first"].manifest_bytes)


def test_files_and_ranges_are_served_by_gunicorn(api, built):
    name = sha(BIG)

    whole = api.client.get(f"/v1/engine/files/{name}")
    assert whole.status_code == 200
    assert whole.content == BIG
    assert whole.headers["etag"] == f'"{name}"'
    assert whole.headers["cache-control"] == "public, max-age=31536000, immutable"

    # resuming at odd offsets (gunicorn sends from the file's offset, exactly Content-Length bytes)
    for start, end in [(1, 10), (1024 * 1024 - 1, 2 * 1024 * 1024 + 7), (len(BIG) - 5, len(BIG) - 1)]:
        part = api.client.get(f"/v1/engine/files/{name}", headers={"Range": f"bytes={start}-{end}"})
        assert part.status_code == 206
        assert part.content == BIG[start:end + 1]
        assert part.headers["content-range"] == f"bytes {start}-{end}/{len(BIG)}"
    rest = api.client.get(f"/v1/engine/files/{name}", headers={"Range": "bytes=1000000-", "If-Range": f'"{name}"'})
    assert (rest.status_code, rest.content) == (206, BIG[1_000_000:])

    head = api.client.head(f"/v1/engine/files/{name}")
    assert (head.status_code, head.headers["content-length"], head.content) == (200, str(len(BIG)), b"")
    past = api.client.get(f"/v1/engine/files/{name}", headers={"Range": f"bytes={len(BIG)}-"})
    assert (past.status_code, past.headers["content-range"]) == (416, f"bytes */{len(BIG)}")
    assert api.client.get(f"/v1/engine/files/{name}", headers={"If-None-Match": f'"{name}"'}).status_code == 304
    manifest = api.client.get(f"/v1/engine/files/{built['first'].manifest_sha256}")
    assert manifest.content == built["first"].manifest_bytes
    unknown = api.client.get(f"/v1/engine/files/{sha(b'nothing')}")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_file")


def test_the_full_archive_is_assembled_once_and_the_same_bytes_from_every_process(api, built):
    answers = []

    def download():
        with httpx.Client(base_url=api.url, timeout=60) as client:  # new connections: both processes answer
            answers.append(client.get("/v1/engine/archive"))

    threads = [threading.Thread(target=download) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert {a.status_code for a in answers} == {200}
    assert {a.content for a in answers} == {built["first"].path.read_bytes()}  # what `recsys build` packed
    assert {a.headers["x-recsys-sha256"] for a in answers} == {built["first"].sha256}
    engine = api.client.get("/v1/engine").json()
    assert (engine["sha256"], engine["size"]) == (built["first"].sha256, built["first"].size)
    assert api.text().count("assembled the full archive") == 1
    size = built["first"].size
    tail = api.client.get("/v1/engine/archive", headers={"Range": f"bytes={size - 100}-"})
    assert (tail.status_code, tail.content) == (206, built["first"].path.read_bytes()[-100:])


def test_a_thin_upload_is_installed_and_one_lacking_files_is_409_listing_them(api, built, tmp_path):
    lacking = build(tmp_path, {"vectors.bin": BIG, "other.bin": b"x" * 1000}, 3, leave_out={sha(b"x" * 1000)})
    refused = api.client.put("/v1/engine/archive", content=lacking.path.read_bytes(),
                             headers={"Content-Type": "application/zip", **AUTH})
    assert refused.status_code == 409
    assert refused.json()["code"] == "missing_files"
    assert refused.json()["missing"] == [{"path": "other.bin", "size": 1000, "sha256": sha(b"x" * 1000)}]

    thin = built["second_thin"]
    assert thin.size < built["second"].size - len(BIG) // 2
    response = api.client.put("/v1/engine/archive", content=thin.path.read_bytes(),
                              headers={"Content-Type": "application/zip", **AUTH})

    assert response.status_code == 201, response.text
    assert response.json()["generation"] == 2
    assert response.json()["manifest_sha256"] == built["second"].manifest_sha256
    full = api.client.get("/v1/engine/archive")
    assert full.content == built["second"].path.read_bytes()
    out = tmp_path / "downloaded.zip"
    out.write_bytes(full.content)
    assert not verify(out).thin  # what `recsys verify` checks


def test_concurrent_uploads_to_both_processes_get_distinct_generations(api, tmp_path):
    before = api.client.get("/v1/engine").json()["generation"]
    archives = [build(tmp_path, {"vectors.bin": BIG, f"new-{m}.bin": os.urandom(5000)}, m, leave_out={sha(BIG)})
                for m in range(10, 16)]
    statuses: list[int] = []

    def upload(path):
        with httpx.Client(base_url=api.url, timeout=60) as client:
            statuses.append(client.put("/v1/engine/archive", content=path.read_bytes(),
                                       headers={"Content-Type": "application/zip", **AUTH}).status_code)

    threads = [threading.Thread(target=upload, args=(a.path,)) for a in archives]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert set(statuses) <= {201, 409}  # 409: an older build arrived after a newer one
    engine = api.client.get("/v1/engine").json()
    assert engine["generation"] == before + statuses.count(201)
    assert engine["version"] == archives[-1].manifest.version  # the newest is never refused
    state = json.loads((api.store / "state.json").read_text())
    assert len(state["versions"]) == 3  # RECSYS_KEEP_ENGINES
    kept = {f["sha256"] for v in state["versions"] for f in v["manifest"]["files"]}
    kept |= {v["manifest_sha256"] for v in state["versions"]}
    on_disk = {p.name for p in (api.store / "blobs").glob("??/*")}
    assert on_disk == kept  # every kept file, nothing else
    for name in kept:
        assert api.client.head(f"/v1/engine/files/{name}").status_code == 200


def test_a_first_wave_store_is_migrated_by_gunicorn_s_master(rabbitmq_url, redis_url, tmp_path, built):
    # Given the archive store a first-wave API left: <version>.zip files and state.json naming them
    store = tmp_path / "api-data" / "archives"
    store.mkdir(parents=True)
    entries = []
    for generation, archive in ((4, built["second"]), (3, built["first"])):
        shutil.copyfile(archive.path, store / f"{archive.manifest.version}.zip")
        entries.append({"generation": generation, "file": f"{archive.manifest.version}.zip", "sha256": archive.sha256,
                        "size": archive.size, "installed_at": "2026-11-28T22:00:00.000000Z",
                        "manifest": archive.manifest.to_dict()})
    (store / "state.json").write_text(json.dumps({"generation": 4, "current": entries[0], "previous": entries[1:],
                                                  "history": []}))
    api = Api(tmp_path, api_env(tmp_path, rabbitmq_url, redis_url), workers=2, threads=2)

    # When gunicorn starts
    try:
        api.start()

        # Then the store is content-addressed, with the same generations, and the old zips are gone
        engine = api.client.get("/v1/engine").json()
        assert (engine["generation"], engine["manifest_sha256"]) == (4, built["second"].manifest_sha256)
        assert list(store.glob("*.zip")) == []
        assert api.client.get("/v1/engine/archive").content == built["second"].path.read_bytes()
        assert api.client.get(f"/v1/engine/files/{sha(BIG)}").content == BIG
        rollback = api.client.post("/v1/engine/rollback", headers=AUTH).json()
        assert (rollback["generation"], rollback["manifest_sha256"]) == (5, built["first"].manifest_sha256)
        log = api.text()
        assert log.count("migrated archive store") == 1  # in the master, once
        assert "Booting worker" in log
    finally:
        api.stop()
        api.client.close()
