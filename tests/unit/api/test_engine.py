"""The engine endpoints: manifest, archive download/upload, rollback, builds, and their auth."""

from __future__ import annotations

import hashlib
import os
import zipfile

import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ConnectionClosed

from recsys import protocol

from .conftest import AUTH, TOKEN, pack_files, sha

PROTECTED = [
    ("PUT", "/v1/engine/archive"),
    ("POST", "/v1/engine/rollback"),
    ("POST", "/v1/engine/builds"),
]


def call(h, method, path, headers=None, body=b""):
    return h.client.simulate_request(method, path, headers=headers or {}, body=body)


def read_member(path, name):
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)


# -- auth ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer ", f"Basic {TOKEN}", f"Token {TOKEN}"])
def test_protected_endpoints_without_a_bearer_token_are_401(harness, method, path, header):
    headers = {"Authorization": header} if header else {}

    response = call(harness, method, path, headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.json["description"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("token", ["wrong", TOKEN + "x", TOKEN[:-1], TOKEN.upper()])
def test_protected_endpoints_with_a_wrong_token_are_401(harness, method, path, token):
    response = call(harness, method, path, {"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "token is wrong" in response.json["description"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_without_a_configured_token_protected_endpoints_are_403_saying_how_to_set_one(make_harness, method, path):
    h = make_harness(api_token=None)

    response = call(h, method, path, AUTH)

    assert response.status_code == 403
    assert "set RECSYS_API_TOKEN" in response.json["description"]


def test_the_bearer_scheme_is_case_insensitive(harness):
    response = call(harness, "POST", "/v1/engine/builds", {"Authorization": f"bearer {TOKEN}"})

    assert response.status_code == 202


# -- manifest and download ---------------------------------------------------------------


def test_before_the_first_engine_manifest_and_archive_are_404(harness):
    for path in ("/v1/engine", "/v1/engine/archive"):
        response = harness.client.simulate_get(path)
        assert response.status_code == 404
        assert "no engine has been installed yet" in response.json["description"]


def test_upload_installs_the_archive_as_generation_1_and_broadcasts_it(harness):
    path = harness.archive()

    response = harness.upload(path)

    assert response.status_code == 201
    body = response.json
    assert body["generation"] == 1
    assert body["engine"] == "stub"
    manifest = read_member(path, "manifest.json")
    assert body["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert body["bytes"] == sum(f["size"] for f in body["files"]) + len(manifest)
    assert (body["sha256"], body["size"]) == (None, None)  # the full archive is assembled when first asked for
    assert protocol.HEADER_SHA256.lower() not in response.headers
    assert response.headers[protocol.HEADER_GENERATION.lower()] == "1"
    assert [a.generation for a in harness.broadcaster.published] == [1]
    assert harness.client.simulate_get("/v1/engine").json == body


def test_download_streams_the_current_archive_with_its_headers(harness):
    path = harness.archive()
    installed = harness.upload(path).json

    response = harness.client.simulate_get("/v1/engine/archive")

    assert response.status_code == 200
    assert response.content == path.read_bytes()  # assembled from the stored files: the very bytes packed
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["etag"] == f'"{installed["version"]}"'
    assert response.headers[protocol.HEADER_SHA256.lower()] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert response.headers[protocol.HEADER_GENERATION.lower()] == "1"
    assert response.headers[protocol.HEADER_VERSION.lower()] == installed["version"]
    assert response.headers["content-length"] == str(len(path.read_bytes()))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "no-cache"
    # and GET /v1/engine now tells the full archive's sha256 and size
    engine = harness.client.simulate_get("/v1/engine").json
    assert (engine["sha256"], engine["size"]) == (response.headers[protocol.HEADER_SHA256.lower()],
                                                  len(response.content))


@pytest.mark.parametrize("tag", ['"{v}"', 'W/"{v}"', '"other", "{v}"', "*"])
def test_if_none_match_with_the_current_version_is_304(harness, tag):
    version = harness.upload(harness.archive()).json["version"]

    response = harness.client.simulate_get("/v1/engine/archive", headers={"If-None-Match": tag.format(v=version)})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == f'"{version}"'


def test_if_none_match_with_another_version_downloads(harness):
    harness.upload(harness.archive())

    response = harness.client.simulate_get("/v1/engine/archive", headers={"If-None-Match": '"20200101T000000000000Z"'})

    assert response.status_code == 200


# -- upload rules ------------------------------------------------------------------------------


def test_a_newer_upload_becomes_generation_2_and_keeps_the_previous(harness):
    first = harness.upload(harness.archive(minutes=0)).json
    second = harness.upload(harness.archive(minutes=5)).json

    assert second["generation"] == 2
    assert harness.client.simulate_get("/v1/engine").json["version"] == second["version"]
    assert [p.version for p in harness.store._state().previous] == [first["version"]]


@pytest.mark.parametrize("minutes", [0, -5])
def test_an_upload_not_newer_than_the_current_is_409_and_changes_nothing(harness, minutes):
    current = harness.upload(harness.archive(minutes=0)).json

    response = harness.upload(harness.archive(minutes=minutes))

    assert response.status_code == 409
    assert response.json["code"] == "not_newer"
    assert "is not newer than the current engine" in response.json["description"]
    assert harness.client.simulate_get("/v1/engine").json == current
    assert len(harness.broadcaster.published) == 1


@pytest.mark.parametrize(("data", "reason"), [
    (b"this is not a zip", "zip"),
    (b"", "zip"),
])
def test_a_corrupt_archive_is_400_and_the_current_one_stays(harness, data, reason):
    current = harness.upload(harness.archive()).json

    response = call(harness, "PUT", "/v1/engine/archive", {"Content-Type": "application/zip", **AUTH}, data)

    assert response.status_code == 400
    assert response.json["title"] == "Invalid archive"
    assert reason in response.json["description"].lower()
    assert harness.client.simulate_get("/v1/engine").json == current
    assert list(harness.store.incoming.iterdir()) == []  # the temporary file is gone


def test_a_tampered_archive_is_400(harness):
    data = bytearray(harness.archive(payload=b"vector-1111", name="vectors.bin").read_bytes())
    at = data.find(b"vector-1111")  # .bin files are stored uncompressed
    assert at > 0
    data[at:at + 11] = b"vector-2222"  # same size, other content: the sha256 no longer matches

    response = call(harness, "PUT", "/v1/engine/archive", {"Content-Type": "application/zip", **AUTH}, bytes(data))

    assert response.status_code == 400
    assert "vectors.bin" in response.json["description"]
    assert harness.client.simulate_get("/v1/engine").status_code == 404


def test_an_upload_with_another_content_type_is_415(harness):
    response = call(harness, "PUT", "/v1/engine/archive", {"Content-Type": "application/json", **AUTH},
                    harness.archive().read_bytes())

    assert response.status_code == 415
    assert "application/zip" in response.json["description"]


def test_an_upload_over_the_size_limit_is_413(make_harness):
    h = make_harness(archive_max_bytes=1024)
    path = h.archive(payload=os.urandom(4000), name="vectors.bin")

    response = h.upload(path)

    assert response.status_code == 413
    assert "larger than the limit of 1024" in response.json["description"]
    assert h.store.current() is None


def test_application_octet_stream_is_accepted_for_an_upload(harness):
    response = harness.upload(harness.archive(), headers={"Content-Type": "application/octet-stream"})

    assert response.status_code == 201


def test_uploads_beyond_keep_drop_the_oldest_version_and_its_files(make_harness):
    h = make_harness(keep_engines=2)
    bodies = [h.upload(h.archive(minutes=m, payload=b"%d" % m)).json for m in (1, 2, 3)]

    assert [v.version for v in h.store.versions()] == [b["version"] for b in bodies[:0:-1]]
    oldest = bodies[0]
    for name in (oldest["manifest_sha256"], oldest["files"][0]["sha256"]):
        response = h.client.simulate_get(f"/v1/engine/files/{name}")
        assert response.status_code == 404
        assert response.json["code"] == "unknown_file"


# -- thin uploads ------------------------------------------------------------------------------


def test_a_thin_upload_of_files_the_api_holds_is_installed(harness):
    made = harness.tmp / "made"
    first = harness.upload(pack_files(made, {"a.bin": b"a" * 500, "b.bin": b"b" * 400}, minutes=1).path).json
    held = {f["sha256"] for f in first["files"]}
    full = pack_files(made, {"a.bin": b"a" * 500, "b.bin": b"b" * 400, "c.bin": b"c" * 300}, minutes=2)
    thin = pack_files(made, {"a.bin": b"a" * 500, "b.bin": b"b" * 400, "c.bin": b"c" * 300}, minutes=2,
                      leave_out=held)

    response = harness.upload(thin.path)

    assert response.status_code == 201, response.json
    assert response.json["generation"] == 2
    assert response.json["manifest_sha256"] == full.manifest_sha256
    assert harness.broadcaster.published[-1].manifest_sha256 == full.manifest_sha256
    assert harness.client.simulate_get("/v1/engine/archive").content == full.path.read_bytes()


def test_a_thin_upload_lacking_files_is_409_missing_files_listing_them_and_changes_nothing(harness):
    made = harness.tmp / "made"
    current = harness.upload(pack_files(made, {"a.bin": b"a" * 500}, minutes=1).path).json
    thin = pack_files(made, {"a.bin": b"a" * 500, "b.bin": b"b" * 400, "c.json": b"{}"}, minutes=2,
                      leave_out={sha(b"a" * 500), sha(b"b" * 400)})

    response = harness.upload(thin.path)

    assert response.status_code == 409
    body = response.json
    assert (body["code"], body["title"]) == ("missing_files", "Missing files")
    assert body["missing"] == [{"path": "b.bin", "size": 400, "sha256": sha(b"b" * 400)}]
    assert "b.bin" in body["description"]
    assert harness.client.simulate_get("/v1/engine").json == current
    assert len(harness.broadcaster.published) == 1


def test_the_broadcast_names_the_version_by_its_manifest_sha256(harness):
    from recsys_api.broadcast import engine_updated_message

    installed = harness.upload(harness.archive()).json

    message = engine_updated_message(harness.broadcaster.published[0], "exchange")

    assert message.actor_name == protocol.ENGINE_UPDATED_ACTOR
    assert message.kwargs == {"generation": 1, "version": installed["version"], "created_at": installed["created_at"],
                              "manifest_sha256": installed["manifest_sha256"]}


# -- rollback ---------------------------------------------------------------------------------


def test_rollback_makes_the_previous_archive_current_as_a_new_generation(harness):
    first = harness.upload(harness.archive(minutes=1)).json
    harness.upload(harness.archive(minutes=2))

    response = call(harness, "POST", "/v1/engine/rollback", AUTH)

    assert response.status_code == 200
    assert response.json["version"] == first["version"]
    assert response.json["generation"] == 3
    assert harness.broadcaster.published[-1].generation == 3
    assert harness.client.simulate_get("/v1/engine/archive").headers["etag"] == f'"{first["version"]}"'


def test_rollback_without_a_previous_archive_is_409(harness):
    assert call(harness, "POST", "/v1/engine/rollback", AUTH).status_code == 409
    harness.upload(harness.archive())

    response = call(harness, "POST", "/v1/engine/rollback", AUTH)

    assert response.status_code == 409
    assert "no previous engine version" in response.json["description"]


def test_a_second_rollback_goes_one_further_back_then_stops(make_harness):
    h = make_harness(keep_engines=3)
    versions = [h.upload(h.archive(minutes=m)).json["version"] for m in (1, 2, 3)]

    assert call(h, "POST", "/v1/engine/rollback", AUTH).json["version"] == versions[1]
    assert call(h, "POST", "/v1/engine/rollback", AUTH).json["version"] == versions[0]
    assert call(h, "POST", "/v1/engine/rollback", AUTH).status_code == 409
    assert h.client.simulate_get("/v1/engine").json["generation"] == 5


def test_after_a_rollback_a_newer_upload_is_accepted(harness):
    harness.upload(harness.archive(minutes=1))
    harness.upload(harness.archive(minutes=2))
    call(harness, "POST", "/v1/engine/rollback", AUTH)

    response = harness.upload(harness.archive(minutes=3))

    assert response.status_code == 201
    assert response.json["generation"] == 4


# -- builds -------------------------------------------------------------------------------------


def test_a_build_is_sent_once_and_a_second_request_is_409(make_harness):
    h = make_harness(worker=False)

    first = call(h, "POST", "/v1/engine/builds", AUTH)
    second = call(h, "POST", "/v1/engine/builds", AUTH)

    assert first.status_code == 202
    task_id = first.json["task_id"]
    assert first.headers["location"] == f"/v1/tasks/{task_id}"
    assert [(m.actor_name, m.message_id) for m in h.queued(h.settings.build_queue)] == [
        (protocol.BUILD_ACTOR, task_id)
    ]
    assert second.status_code == 409
    assert task_id in second.json["description"]
    assert h.client.simulate_get(f"/v1/tasks/{task_id}").json == {"task_id": task_id, "status": "pending"}


def test_a_build_while_one_holds_the_build_lock_is_409(harness):
    from recsys.cluster import BuildLock

    BuildLock(harness.kv, 60).acquire(host="builder", pid=7)

    response = call(harness, "POST", "/v1/engine/builds", AUTH)

    assert response.status_code == 409
    assert "already running on builder (pid 7)" in response.json["description"]


class FlakyBroker(StubBroker):
    """A StubBroker whose enqueue fails like a RabbitmqBroker's while ``down``."""

    down = False

    def enqueue(self, message, *, delay=None):
        if self.down:
            raise ConnectionClosed(OSError("connection refused"))
        return super().enqueue(message, delay=delay)


def test_a_build_that_cannot_be_sent_is_503_and_does_not_block_the_next(make_harness):
    broker = FlakyBroker()
    h = make_harness(broker=broker, worker=False)
    broker.down = True

    refused = call(h, "POST", "/v1/engine/builds", AUTH)
    broker.down = False
    accepted = call(h, "POST", "/v1/engine/builds", AUTH)

    assert refused.status_code == 503
    assert "RabbitMQ" in refused.json["description"]
    assert accepted.status_code == 202


@pytest.mark.parametrize(("body", "kwargs"), [(None, {}), ("{}", {}), ('{"force": false}', {}),
                                             ('{"force": true}', {"force": True})])
def test_a_build_takes_force_and_passes_it_to_the_worker(make_harness, body, kwargs):
    h = make_harness(worker=False)
    headers = {**AUTH, "Content-Type": "application/json"} if body is not None else AUTH

    response = call(h, "POST", "/v1/engine/builds", headers, body=body)

    assert response.status_code == 202, response.json
    assert [m.kwargs for m in h.queued(h.settings.build_queue)] == [kwargs]


@pytest.mark.parametrize(("body", "field", "says"), [
    ('{"force": "yes"}', "force", "'force' must be true or false"),
    ('{"forse": true}', "forse", "unknown field 'forse'"),
    ("[true]", None, "must be a JSON object"),
    ("not json", None, "not valid JSON"),
])
def test_a_bad_build_body_is_400_and_sends_nothing(make_harness, body, field, says):
    h = make_harness(worker=False)

    response = call(h, "POST", "/v1/engine/builds", {**AUTH, "Content-Type": "application/json"}, body=body)

    assert response.status_code == 400
    assert response.json["code"] == "bad_request"
    assert response.json.get("field") == field
    assert says in response.json["description"]
    assert h.queued(h.settings.build_queue) == []
