"""``GET``/``HEAD /v1/engine/files/{sha256}`` and the byte ranges and conditions of
the file endpoints (also ``GET /v1/engine/archive``): 200, 206, 304, 404, 416."""

from __future__ import annotations

import hashlib

import pytest

from recsys_api.ranges import UNSATISFIABLE, byte_range

from .conftest import pack_files, sha

DATA = bytes(range(256)) * 40  # 10,240 bytes
SIZE = len(DATA)
IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
def engine(harness):
    """The harness with an engine of two files (one empty) installed by an upload."""
    built = pack_files(harness.tmp / "made", {"vectors.bin": DATA, "empty.bin": b""})
    response = harness.upload(built.path)
    assert response.status_code == 201
    harness.built = built
    return harness


def get(h, name, method="GET", **headers):
    return h.client.simulate_request(method, f"/v1/engine/files/{name}", headers=headers)


def test_a_file_is_served_whole_with_its_headers(engine):
    response = get(engine, sha(DATA))

    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["etag"] == f'"{sha(DATA)}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == IMMUTABLE


def test_the_manifest_is_served_by_its_sha256_as_its_exact_bytes(engine):
    manifest_sha256 = engine.client.simulate_get("/v1/engine").json["manifest_sha256"]

    response = get(engine, manifest_sha256)

    assert response.status_code == 200
    assert response.content == engine.built.manifest_bytes
    assert hashlib.sha256(response.content).hexdigest() == manifest_sha256


def test_head_gives_the_headers_of_get_without_a_body(engine):
    response = get(engine, sha(DATA), "HEAD")

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["etag"] == f'"{sha(DATA)}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == IMMUTABLE


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=0-", 0, SIZE - 1),
    ("bytes=100-", 100, SIZE - 1),
    ("bytes=100-199", 100, 199),
    ("bytes=0-0", 0, 0),
    (f"bytes={SIZE - 1}-", SIZE - 1, SIZE - 1),
    (f"bytes=10-{SIZE * 5}", 10, SIZE - 1),  # past the end means to the end
    ("bytes=-100", SIZE - 100, SIZE - 1),  # the last 100 bytes
    (f"bytes=-{SIZE * 2}", 0, SIZE - 1),
    ("BYTES = 5 - 9", 5, 9),  # unit case and spaces
])
def test_a_range_is_206_with_that_part(engine, header, first, last):
    response = get(engine, sha(DATA), Range=header)

    assert response.status_code == 206
    assert response.content == DATA[first:last + 1]
    assert response.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.headers["etag"] == f'"{sha(DATA)}"'


def test_head_with_a_range_gives_the_part_s_headers(engine):
    response = get(engine, sha(DATA), "HEAD", Range="bytes=10-19")

    assert response.status_code == 206
    assert response.content == b""
    assert response.headers["content-range"] == f"bytes 10-19/{SIZE}"
    assert response.headers["content-length"] == "10"


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 1000}-", f"bytes={SIZE}-{SIZE + 5}", "bytes=-0"])
def test_a_range_past_the_end_is_416_with_the_size(engine, header):
    response = get(engine, sha(DATA), Range=header)

    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert response.json["title"] == "Range not satisfiable"
    assert str(SIZE) in response.json["description"]


@pytest.mark.parametrize("header", ["bytes=0-", "bytes=-5"])
def test_any_range_of_an_empty_file_is_416(engine, header):
    response = get(engine, sha(b""), Range=header)

    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */0"


def test_an_empty_file_is_served_as_zero_bytes(engine):
    response = get(engine, sha(b""))

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"


@pytest.mark.parametrize("header", [
    "bytes=5-2",  # last before first: invalid
    "bytes=0-1,5-6",  # several ranges: the whole file is simpler and never wrong
    "items=0-5",
    "bytes=abc-",
    "bytes=-",
    "bytes=",
    "bytes 0-5",
    "bytes=1.5-3",
    "bytes=+1-3",
    "bytes=٣-",  # a non-ASCII digit
    "bytes=" + "9" * 30 + "-",
])
def test_a_range_that_does_not_parse_is_ignored_and_the_whole_file_sent(engine, header):
    response = get(engine, sha(DATA), Range=header)

    assert response.status_code == 200
    assert response.content == DATA


@pytest.mark.parametrize("tag", ['"{s}"', 'W/"{s}"', '"other", "{s}"', "*"])
def test_if_none_match_with_the_file_s_tag_is_304(engine, tag):
    response = get(engine, sha(DATA), **{"If-None-Match": tag.format(s=sha(DATA))})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == f'"{sha(DATA)}"'


def test_if_none_match_wins_over_a_range(engine):
    response = get(engine, sha(DATA), **{"If-None-Match": f'"{sha(DATA)}"', "Range": "bytes=0-9"})

    assert response.status_code == 304


def test_if_none_match_with_another_tag_serves_the_file(engine):
    assert get(engine, sha(DATA), **{"If-None-Match": f'"{sha(b"other")}"'}).status_code == 200


def test_if_range_with_the_file_s_tag_honours_the_range(engine):
    response = get(engine, sha(DATA), Range="bytes=10-19", **{"If-Range": f'"{sha(DATA)}"'})

    assert response.status_code == 206
    assert response.content == DATA[10:20]


@pytest.mark.parametrize("condition", [
    '"{other}"', 'W/"{s}"', "Sat, 28 Nov 2026 21:18:00 GMT", "{s}",
])
def test_if_range_with_anything_else_sends_the_whole_file(engine, condition):
    value = condition.format(s=sha(DATA), other=sha(b"other"))

    response = get(engine, sha(DATA), Range="bytes=10-19", **{"If-Range": value})

    assert response.status_code == 200
    assert response.content == DATA


@pytest.mark.parametrize("name", [
    sha(b"never stored"),
    sha(DATA).upper(),
    sha(DATA)[:-1],
    sha(DATA) + "0",
    "state.json",
    "..",
    "%00",
])
def test_an_unknown_or_malformed_name_is_a_json_404_with_a_code(engine, name):
    response = get(engine, name)

    assert response.status_code == 404
    assert response.json["code"] == "unknown_file"
    assert response.json["title"] == "Unknown file"
    assert "cache-control" not in response.headers


def test_head_of_an_unknown_file_is_404(engine):
    assert get(engine, sha(b"never stored"), "HEAD").status_code == 404


def test_before_any_engine_every_file_is_404(harness):
    response = get(harness, sha(DATA))

    assert response.status_code == 404
    assert response.json["code"] == "unknown_file"


def test_files_of_the_previous_version_are_served_until_it_is_dropped(make_harness):
    h = make_harness(keep_engines=2)
    made = h.tmp / "made"
    h.upload(pack_files(made, {"a.bin": b"first"}, minutes=1).path)
    h.upload(pack_files(made, {"a.bin": b"second"}, minutes=2).path)

    assert get(h, sha(b"first")).content == b"first"
    h.upload(pack_files(made, {"a.bin": b"third"}, minutes=3).path)
    assert get(h, sha(b"first")).status_code == 404
    assert get(h, sha(b"second")).content == b"second"


def test_bytes_served_are_counted_by_route(engine):
    from .test_operations import metric

    get(engine, sha(DATA))
    get(engine, sha(DATA), Range="bytes=0-99")
    get(engine, sha(DATA), "HEAD")
    get(engine, sha(DATA), **{"If-None-Match": f'"{sha(DATA)}"'})
    archive = engine.client.simulate_get("/v1/engine/archive")

    text = engine.client.simulate_get("/metrics").text
    assert metric(text, "recsys_api_file_bytes_served_total", route="/v1/engine/files/{sha256}") == SIZE + 100
    assert metric(text, "recsys_api_file_bytes_served_total", route="/v1/engine/archive") == len(archive.content)


# -- the full archive's ranges ----------------------------------------------------------------


def test_the_archive_serves_ranges_that_join_into_the_whole(engine):
    whole = engine.client.simulate_get("/v1/engine/archive")
    version = whole.headers["etag"]
    size = len(whole.content)

    parts = [engine.client.simulate_get("/v1/engine/archive", headers={"Range": f"bytes={start}-{start + 999}",
                                                                      "If-Range": version})
             for start in range(0, size, 1000)]

    assert all(p.status_code == 206 for p in parts)
    assert b"".join(p.content for p in parts) == whole.content == engine.built.path.read_bytes()
    assert parts[-1].headers["content-range"] == f"bytes {(size - 1) // 1000 * 1000}-{size - 1}/{size}"


def test_an_archive_range_past_its_end_is_416(engine):
    size = len(engine.client.simulate_get("/v1/engine/archive").content)

    response = engine.client.simulate_get("/v1/engine/archive", headers={"Range": f"bytes={size}-"})

    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_an_archive_range_for_a_replaced_version_gets_the_whole_new_archive(engine):
    old_version = engine.client.simulate_get("/v1/engine/archive").headers["etag"]
    engine.upload(engine.archive(minutes=30))

    response = engine.client.simulate_get("/v1/engine/archive", headers={"Range": "bytes=100-",
                                                                        "If-Range": old_version})

    assert response.status_code == 200
    assert response.headers["etag"] != old_version


# -- byte_range on its own ------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "size", "expected"), [
    ("bytes=0-", 1, (0, 0)),
    ("bytes=0-", 0, UNSATISFIABLE),
    ("bytes=-1", 0, UNSATISFIABLE),
    ("bytes=-1", 10, (9, 9)),
    ("bytes=3-3", 4, (3, 3)),
    ("bytes=4-4", 4, UNSATISFIABLE),
    ("bytes=5-4", 10, None),
    ("bytes=1-2,3-4", 10, None),
    ("pages=1-2", 10, None),
    ("", 10, None),
    ("bytes=-x", 10, None),
])
def test_byte_range(header, size, expected):
    assert byte_range(header, size) == expected
