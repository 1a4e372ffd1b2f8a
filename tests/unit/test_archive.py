"""Archive format: manifest validation, pack, verify (every rule), unpack."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recsys
from recsys.archive import (
    MANIFEST_NAME,
    FileEntry,
    Limits,
    Manifest,
    extract,
    file_sha256,
    new_version,
    pack,
    peek_manifest,
    read_manifest,
    unpack,
    verify,
)
from recsys.config import Settings
from recsys.engine import EngineMetadata
from recsys.errors import InvalidArchive, StoreError
from recsys.manifest import parse_manifest
from tests.support.engines import TinyEngine, publications
from tests.support.zipcraft import (
    CREATED_AT,
    DEFLATED,
    DIRECTORY,
    FIFO,
    SYMLINK,
    VERSION,
    Raw,
    archive_of,
    craft_zip,
    deflated_zeros,
    entry,
    manifest_json,
)

FILES = {"vocab.json": b'{"graph": 1, "tree": 2}', "index/vectors.npy": bytes(range(256)) * 40}


@pytest.fixture
def engine_folder(tmp_path: Path) -> Path:
    """An Engine.save output: JSON, a .npy array, and a binary file larger than one chunk."""
    engine = TinyEngine()
    engine.fit(publications(8))
    folder = tmp_path / "saved"
    folder.mkdir()
    engine.save(folder)
    (folder / "index" / "blob.bin").write_bytes(np.random.default_rng(1).bytes(2_500_000))
    return folder


def pack_tiny(folder: Path, out: Path, **kwargs) -> recsys.archive.VerifiedArchive:
    return pack(folder, out, engine="tiny", metadata=EngineMetadata(8, 16, model="words", dimension=1), **kwargs)


def rejected(path: Path, *, limits: Limits = Limits(), engines=None) -> str:
    with pytest.raises(InvalidArchive) as caught:
        verify(path, limits, engines=engines)
    return str(caught.value)


# -- manifest --------------------------------------------------------------------------


def valid_manifest(**changes) -> dict:
    data = json.loads(manifest_json([entry(n, d) for n, d in FILES.items()]))
    data.update(changes)
    return data


def test_manifest_round_trips_through_its_dict():
    manifest = Manifest.from_dict(valid_manifest(extra={"trees": 10}, model="m", dimension=384))
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    assert list(manifest.to_dict()) == [
        "format",
        "engine",
        "engine_version",
        "recsys_version",
        "version",
        "created_at",
        "publications",
        "sentences",
        "model",
        "dimension",
        "extra",
        "files",
    ]
    assert manifest.files[0] == FileEntry(
        "vocab.json", len(FILES["vocab.json"]), entry("vocab.json", FILES["vocab.json"])["sha256"]
    )
    assert manifest.created == datetime(2026, 11, 28, 21, 18, 0, 123456, tzinfo=UTC)
    assert manifest.total_size == sum(len(d) for d in FILES.values())


def test_manifest_ignores_unknown_keys_of_a_newer_recsys():
    assert Manifest.from_dict(valid_manifest(future_field=1)).engine == "tiny"


def test_manifest_of_an_unknown_format_asks_to_upgrade():
    with pytest.raises(InvalidArchive) as caught:
        Manifest.from_dict(valid_manifest(format=2))
    assert str(caught.value) == "archive format 2 is not supported by this recsys (supports 1); upgrade recsys"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "1"}, "'format' must be a whole number"),
        ({"engine": "Tiny Engine"}, "'engine' 'Tiny Engine' is not an engine name"),
        ({"engine": None}, "'engine' must be a non-empty string"),
        ({"version": "20261128T211800000000Z"}, "does not match 'created_at'"),
        ({"created_at": "2026-11-28 21:18:00"}, "is not a UTC time"),
        ({"created_at": "2026-13-28T21:18:00.123456Z", "version": "20261328T211800123456Z"}, "is not a UTC time"),
        ({"publications": -1}, "'publications' must be a whole number >= 0, got -1 (int)"),
        ({"sentences": True}, "'sentences' must be a whole number >= 0, got True (bool)"),
        ({"publications": "12"}, "got '12' (str)"),
        ({"dimension": 0}, "'dimension' must be a whole number >= 1 or null"),
        ({"model": 3}, "'model' must be a string or null"),
        ({"extra": []}, "'extra' must be a JSON object"),
        ({"files": {}}, "'files' must be a list"),
        ({"files": [{"path": "a", "size": 1, "sha256": "XYZ"}]}, "'sha256' of 'a' must be 64 lowercase hex digits"),
        ({"files": [{"path": "a", "size": -1, "sha256": "0" * 64}]}, "'size' of 'a' must be a whole number >= 0"),
        ({"files": [{"path": "../a", "size": 1, "sha256": "0" * 64}]}, "file '../a' escapes the archive"),
        ({"files": [entry("a", b"1"), entry("a", b"1")]}, "file 'a' is listed twice"),
        ({"files": [entry("a", b"1"), entry("a/b", b"1")]}, "'a' is listed as a file and as the folder of 'a/b'"),
        ({"files": [entry("manifest.json", b"{}")]}, "the manifest cannot list itself"),
    ],
)
def test_manifest_rejects_bad_fields_naming_them(changes, message):
    with pytest.raises(InvalidArchive) as caught:
        Manifest.from_dict(valid_manifest(**changes))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1, 2]", "must hold a JSON object, got list"),
        (b"{not json", "is not valid JSON"),
        (b'{"format": 1, "format": 1}', "has the key 'format' twice"),
        (b'{"format": NaN}', "NaN is not a JSON value"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_manifest_json_that_cannot_be_parsed_is_rejected(raw, message):
    with pytest.raises(InvalidArchive) as caught:
        parse_manifest(raw)
    assert message in str(caught.value)


def test_new_version_derives_the_version_from_created_at_in_utc():
    moment = datetime(2026, 11, 28, 22, 18, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert new_version(moment) == ("20261128T211800123456Z", "2026-11-28T21:18:00.123456Z")
    version, created_at = new_version()
    assert Manifest.from_dict(valid_manifest(version=version, created_at=created_at)).version == version


def test_new_version_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        new_version(datetime(2026, 1, 1))


# -- pack ------------------------------------------------------------------------------


def test_pack_verify_unpack_round_trip(engine_folder, tmp_path):
    out = tmp_path / "out" / "engine.zip"
    packed = pack_tiny(engine_folder, out, engine_version="1.2.3")

    verified = verify(out, engines={"tiny"})
    manifest = unpack(out, tmp_path / "unpacked" / "engine", engines={"tiny"})

    assert verified == packed
    assert verified.sha256 == file_sha256(out) and verified.size == out.stat().st_size
    assert manifest == packed.manifest
    assert manifest.engine == "tiny" and manifest.engine_version == "1.2.3"
    assert manifest.recsys_version == recsys.__version__
    assert (manifest.publications, manifest.sentences, manifest.model, manifest.dimension) == (8, 16, "words", 1)
    saved = sorted(p.relative_to(engine_folder).as_posix() for p in engine_folder.rglob("*") if p.is_file())
    assert [f.path for f in manifest.files] == saved
    unpacked = tmp_path / "unpacked" / "engine"
    for name in saved:
        assert (unpacked / name).read_bytes() == (engine_folder / name).read_bytes()
    assert read_manifest(unpacked) == manifest
    assert TinyEngine.load(unpacked).publication_count == 8
    assert sorted(p.name for p in (tmp_path / "unpacked").iterdir()) == ["engine"]


def test_pack_writes_the_manifest_first_and_stores_binary_files_uncompressed(engine_folder, tmp_path):
    out = tmp_path / "engine.zip"
    pack_tiny(engine_folder, out)
    with zipfile.ZipFile(out) as archive:
        infos = archive.infolist()
    methods = {i.filename: i.compress_type for i in infos}
    assert infos[0].filename == MANIFEST_NAME
    assert methods[MANIFEST_NAME] == methods["publications.json"] == zipfile.ZIP_DEFLATED
    assert methods["index/lengths.npy"] == methods["index/blob.bin"] == zipfile.ZIP_STORED


def test_pack_replaces_the_output_and_leaves_no_temporary_file(engine_folder, tmp_path):
    out = tmp_path / "engine.zip"
    out.write_bytes(b"an older archive")
    pack_tiny(engine_folder, out)
    assert [p.name for p in tmp_path.iterdir() if p.name != "saved"] == ["engine.zip"]
    verify(out)


def test_pack_uses_the_given_creation_time(engine_folder, tmp_path):
    moment = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    packed = pack_tiny(engine_folder, tmp_path / "a.zip", created_at=moment)
    assert (packed.manifest.version, packed.manifest.created_at) == (
        "20300102T030405600000Z",
        "2030-01-02T03:04:05.600000Z",
    )


def test_pack_refuses_a_symbolic_link(engine_folder, tmp_path):
    (engine_folder / "link.json").symlink_to(engine_folder / "publications.json")
    with pytest.raises(InvalidArchive, match="'link.json' .* is a symbolic link"):
        pack_tiny(engine_folder, tmp_path / "a.zip")
    assert not (tmp_path / "a.zip").exists()


def test_pack_refuses_an_engine_that_saves_its_own_manifest(engine_folder, tmp_path):
    (engine_folder / MANIFEST_NAME).write_text("{}")
    with pytest.raises(InvalidArchive, match="must not save its own manifest.json"):
        pack_tiny(engine_folder, tmp_path / "a.zip")


def test_pack_refuses_metadata_that_is_not_json(engine_folder, tmp_path):
    metadata = EngineMetadata(1, 1, extra={"when": datetime.now(UTC)})
    with pytest.raises(InvalidArchive, match="'extra' is not plain JSON"):
        pack(engine_folder, tmp_path / "a.zip", engine="tiny", metadata=metadata)
    assert list(tmp_path.iterdir()) == [engine_folder]


# -- verify: accepted shapes --------------------------------------------------------------


def test_verify_accepts_a_hand_made_archive(tmp_path):
    verified = verify(archive_of(tmp_path / "a.zip", FILES), engines={"tiny", "other"})
    assert verified.manifest.version == VERSION and verified.manifest.created_at == CREATED_AT


def test_verify_without_engines_checks_the_engine_name_only(tmp_path):
    """The API has no engine plugins: an engine it does not know is fine if well-formed."""
    assert verify(archive_of(tmp_path / "a.zip", FILES, engine="annoy")).manifest.engine == "annoy"


def test_verify_accepts_plain_directory_entries(tmp_path):
    manifest = manifest_json([entry("index/vectors.npy", b"v")])
    path = craft_zip(
        tmp_path / "a.zip",
        [
            Raw("manifest.json", manifest),
            Raw("index/", mode=DIRECTORY),
            Raw("index/vectors.npy", b"v"),
        ],
    )
    assert [f.path for f in verify(path).manifest.files] == ["index/vectors.npy"]


def test_peek_manifest_reads_the_manifest_without_checksums(tmp_path):
    files = dict(FILES)
    path = archive_of(tmp_path / "a.zip", files)
    assert peek_manifest(path).version == VERSION


# -- verify: rejected archives ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil", "member '../evil' escapes the archive"),
        ("index/../../evil", "member 'index/../../evil' escapes the archive"),
        ("/etc/passwd", "member '/etc/passwd' is an absolute path"),
        ("C:/evil", "member 'C:/evil' contains ':'"),
        ("index\\evil", "contains a backslash"),
        ("index//evil", "has an empty or '.' path component"),
        ("./evil", "has an empty or '.' path component"),
        ("evil\x01", "contains a control character"),
    ],
)
def test_verify_rejects_unsafe_member_paths(tmp_path, name, reason):
    path = craft_zip(tmp_path / "a.zip", [Raw("manifest.json", manifest_json([])), Raw(name, b"x")])
    assert reason in rejected(path)


def test_verify_rejects_a_symbolic_link_member(tmp_path):
    files = [entry("index.ann", b"/etc/passwd")]
    path = craft_zip(
        tmp_path / "a.zip",
        [
            Raw("manifest.json", manifest_json(files)),
            Raw("index.ann", b"/etc/passwd", mode=SYMLINK),
        ],
    )
    assert rejected(path) == "member 'index.ann' is a symbolic link"


def test_verify_rejects_a_special_file_member(tmp_path):
    path = craft_zip(tmp_path / "a.zip", [Raw("manifest.json", manifest_json([entry("p", b"")])), Raw("p", mode=FIFO)])
    assert "member 'p' is not a regular file" in rejected(path)


def test_verify_rejects_a_directory_entry_with_content(tmp_path):
    path = craft_zip(
        tmp_path / "a.zip", [Raw("manifest.json", manifest_json([])), Raw("index/", b"data", mode=DIRECTORY)]
    )
    assert "member 'index/' is a directory entry with content" in rejected(path)


def test_verify_rejects_content_whose_sha256_differs_from_the_manifest(tmp_path):
    listed = entry("x.npy", b"original content")
    path = craft_zip(
        tmp_path / "a.zip", [Raw("manifest.json", manifest_json([listed])), Raw("x.npy", b"tampered content")]
    )
    actual = hashlib.sha256(b"tampered content").hexdigest()
    assert rejected(path) == (
        f"member 'x.npy' sha256 mismatch: manifest says {listed['sha256']}, content is {actual}"
    )


def test_verify_rejects_content_that_fails_its_crc(tmp_path):
    path = craft_zip(
        tmp_path / "a.zip",
        [
            Raw("manifest.json", manifest_json([entry("x.npy", b"content")])),
            Raw("x.npy", b"content", crc=1234),
        ],
    )
    assert "member 'x.npy' fails its CRC-32 check" in rejected(path)


BOMB_SIZE = 50 * 1024**2


@pytest.fixture(scope="module")
def zeros():
    return deflated_zeros(BOMB_SIZE)


def test_verify_rejects_a_zip_bomb(tmp_path, zeros):
    compressed, crc, sha256 = zeros
    files = [{"path": "bomb.bin", "size": BOMB_SIZE, "sha256": sha256}]
    path = craft_zip(
        tmp_path / "a.zip",
        [
            Raw("manifest.json", manifest_json(files)),
            Raw("bomb.bin", method=DEFLATED, compressed=compressed, size=BOMB_SIZE, crc=crc),
        ],
    )
    ratio = BOMB_SIZE / len(compressed)
    assert path.stat().st_size < 100_000
    assert rejected(path) == f"member 'bomb.bin' inflates {ratio:.0f}x (limit 200x): a zip bomb?"


def test_verify_rejects_a_zip_bomb_whose_header_lies_about_its_size(tmp_path, zeros):
    """Header and manifest claim 40 kB (a harmless ratio); the stream inflates to 50 MB."""
    compressed, _, _ = zeros
    claimed = bytes(len(compressed))
    files = [entry("bomb.bin", claimed)]
    path = craft_zip(
        tmp_path / "a.zip",
        [
            Raw("manifest.json", manifest_json(files)),
            Raw("bomb.bin", claimed, method=DEFLATED, compressed=compressed),
        ],
    )
    assert rejected(path) == f"member 'bomb.bin' inflates past its declared size of {len(claimed)} bytes"


def test_verify_streams_the_same_large_member_under_a_higher_ratio_limit(tmp_path, zeros):
    """The bomb above is rejected for its ratio only: allowed, its 50 MB stream through."""
    compressed, crc, sha256 = zeros
    files = [{"path": "bomb.bin", "size": BOMB_SIZE, "sha256": sha256}]
    path = craft_zip(
        tmp_path / "a.zip",
        [
            Raw("manifest.json", manifest_json(files)),
            Raw("bomb.bin", method=DEFLATED, compressed=compressed, size=BOMB_SIZE, crc=crc),
        ],
    )
    assert verify(path, Limits(max_ratio=100_000)).manifest.total_size == BOMB_SIZE


def test_verify_rejects_overlapping_members(tmp_path):
    """The 'overlapping files' bomb: a member's data region covers the next member."""
    b_member = 30 + len("b.bin") + 100
    files = [{"path": "a.bin", "size": 100 + b_member, "sha256": "0" * 64}, entry("b.bin", b"y" * 100)]
    path = craft_zip(
        tmp_path / "a.zip",
        [
            Raw("manifest.json", manifest_json(files)),
            Raw("a.bin", b"x" * 100, size=100 + b_member, compressed_size=100 + b_member),
            Raw("b.bin", b"y" * 100),
        ],
    )
    assert rejected(path) == "member 'b.bin' overlaps member 'a.bin': a zip bomb?"


def test_verify_rejects_a_directory_entry_pointing_at_another_member(tmp_path):
    files = [entry("a.bin", b"x" * 100), entry("b.bin", b"x" * 100)]
    path = craft_zip(
        tmp_path / "a.zip",
        [
            Raw("manifest.json", manifest_json(files)),
            Raw("a.bin", b"x" * 100),
            Raw("b.bin", b"x" * 100, offset_of="a.bin"),
        ],
    )
    assert rejected(path) == "member 'b.bin' has another name in its local header (b'a.bin')"


def test_verify_rejects_a_missing_manifest(tmp_path):
    path = craft_zip(tmp_path / "a.zip", [Raw("vocab.json", b"{}")])
    assert rejected(path) == "archive has no manifest.json: it is not an engine archive made by 'recsys build'"


def test_verify_rejects_an_engine_that_is_not_installed(tmp_path):
    path = archive_of(tmp_path / "a.zip", FILES, engine="annoy")
    assert rejected(path, engines={"lexical", "tiny"}) == (
        "archive is for engine 'annoy', which is not installed here (installed: lexical, tiny); "
        "install its plugin, e.g. 'pip install -e plugins/recsys-engine-annoy'"
    )


def test_verify_rejects_a_malformed_engine_name_without_engines(tmp_path):
    path = archive_of(tmp_path / "a.zip", FILES, engine="../../etc")
    assert "'engine' '../../etc' is not an engine name" in rejected(path)


def test_verify_rejects_too_many_entries(tmp_path):
    files = {f"f{i}.bin": b"x" for i in range(5)}
    path = archive_of(tmp_path / "a.zip", files)
    assert rejected(path, limits=Limits(max_entries=5)) == (
        "archive has 6 entries, over the limit of 5 (RECSYS_ARCHIVE_MAX_ENTRIES)"
    )
    verify(path, Limits(max_entries=6))


def test_verify_rejects_an_archive_file_over_the_total_limit(tmp_path):
    path = archive_of(tmp_path / "a.zip", {"blob.bin": bytes(5000)})
    size = path.stat().st_size
    assert rejected(path, limits=Limits(max_bytes=4096)) == (
        f"archive {str(path)!r} is {size} bytes, over the limit of 4096 (RECSYS_ARCHIVE_MAX_BYTES)"
    )


def test_verify_rejects_content_over_the_total_limit(tmp_path):
    """Small compressed, large unpacked (each member under the ratio floor)."""
    files = {f"part{i}.txt": b"abc" * 200_000 for i in range(3)}
    manifest = manifest_json([entry(n, d) for n, d in files.items()])
    path = craft_zip(
        tmp_path / "a.zip", [Raw("manifest.json", manifest)] + [Raw(n, d, DEFLATED) for n, d in files.items()]
    )
    assert path.stat().st_size < 20_000
    assert "archive unpacks to more than 1000000 bytes" in rejected(path, limits=Limits(max_bytes=1_000_000))


def test_verify_rejects_a_file_over_the_per_file_limit(tmp_path):
    path = archive_of(tmp_path / "a.zip", {"blob.bin": bytes(5000)})
    assert rejected(path, limits=Limits(max_file_bytes=4096)) == (
        "member 'blob.bin' is 5000 bytes, over the per-file limit of 4096 (RECSYS_ARCHIVE_MAX_FILE_BYTES)"
    )


def test_verify_rejects_a_member_not_in_the_manifest(tmp_path):
    manifest = manifest_json([entry("vocab.json", b"{}")])
    path = craft_zip(
        tmp_path / "a.zip", [Raw("manifest.json", manifest), Raw("vocab.json", b"{}"), Raw("extra.py", b"")]
    )
    assert rejected(path) == "member 'extra.py' is not listed in the manifest"


def test_verify_rejects_a_manifest_file_missing_from_the_zip(tmp_path):
    manifest = manifest_json([entry("vocab.json", b"{}"), entry("vectors.npy", b"v")])
    path = craft_zip(tmp_path / "a.zip", [Raw("manifest.json", manifest), Raw("vocab.json", b"{}")])
    assert rejected(path) == "manifest lists 'vectors.npy', but the archive has no such member"


def test_verify_rejects_a_member_whose_size_differs_from_the_manifest(tmp_path):
    manifest = manifest_json([{"path": "vocab.json", "size": 3, "sha256": "0" * 64}])
    path = craft_zip(tmp_path / "a.zip", [Raw("manifest.json", manifest), Raw("vocab.json", b"{}")])
    assert rejected(path) == "member 'vocab.json' is 2 bytes, but the manifest says 3"


def test_verify_rejects_an_unknown_format_version(tmp_path):
    path = archive_of(tmp_path / "a.zip", FILES, format=7)
    assert rejected(path) == "archive format 7 is not supported by this recsys (supports 1); upgrade recsys"


def test_verify_rejects_a_file_that_is_not_a_zip(tmp_path):
    path = tmp_path / "a.zip"
    path.write_bytes(b"PK but not really a zip file" * 10)
    assert "not a zip file" in rejected(path)


def test_verify_rejects_a_missing_file(tmp_path):
    assert "does not exist" in rejected(tmp_path / "nothing.zip")


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_verify_rejects_a_truncated_zip(engine_folder, tmp_path, keep):
    out = tmp_path / "a.zip"
    pack_tiny(engine_folder, out)
    data = out.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    assert rejected(out)


def test_verify_rejects_a_zip_whose_data_was_cut_out(tmp_path):
    """The end record survives, the member data does not."""
    path = archive_of(tmp_path / "a.zip", {"blob.bin": bytes(range(256)) * 100})
    data = path.read_bytes()
    start = data.index(bytes(range(256)))
    path.write_bytes(data[:start] + data[start + 20_000 :])
    assert rejected(path)


def test_verify_rejects_duplicate_member_names(tmp_path):
    manifest = manifest_json([entry("vocab.json", b"{}")])
    path = craft_zip(
        tmp_path / "a.zip", [Raw("manifest.json", manifest), Raw("vocab.json", b"{}"), Raw("vocab.json", b"[]")]
    )
    assert rejected(path) == "member 'vocab.json' appears more than once"


def test_verify_rejects_an_encrypted_member(tmp_path):
    manifest = manifest_json([entry("vocab.json", b"{}")])
    path = craft_zip(tmp_path / "a.zip", [Raw("manifest.json", manifest), Raw("vocab.json", b"{}", flags=0x1)])
    assert rejected(path) == "member 'vocab.json' is encrypted"


def test_verify_rejects_an_unsupported_compression_method(tmp_path):
    manifest = manifest_json([entry("vocab.json", b"{}")])
    path = craft_zip(tmp_path / "a.zip", [Raw("manifest.json", manifest), Raw("vocab.json", b"{}", method=12)])
    assert "member 'vocab.json' uses compression method 12" in rejected(path)


def test_verify_rejects_a_non_ascii_name_not_marked_utf8(tmp_path):
    path = craft_zip(
        tmp_path / "a.zip", [Raw("manifest.json", manifest_json([])), Raw("caf\xe9.json".encode("latin-1"))]
    )
    assert "has a non-ASCII name that is not marked as UTF-8" in rejected(path)


def test_verify_rejects_a_name_marked_utf8_that_is_not(tmp_path):
    path = craft_zip(tmp_path / "a.zip", [Raw("manifest.json", manifest_json([])), Raw(b"caf\xe9.json", flags=0x800)])
    assert "is not a readable zip file" in rejected(path)


def test_verify_accepts_a_utf8_member_name(tmp_path):
    assert verify(archive_of(tmp_path / "a.zip", {"café.json": b"{}"})).manifest.files[0].path == "café.json"


def test_limits_come_from_the_settings():
    settings = Settings(archive_max_bytes=10, archive_max_file_bytes=5, archive_max_entries=3, archive_max_ratio=7)
    assert Limits.from_settings(settings) == Limits(max_bytes=10, max_file_bytes=5, max_entries=3, max_ratio=7)


# -- unpack ----------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_unpack_leaves_nothing_behind_when_verification_fails(tmp_path):
    listed = entry("x.npy", b"original")
    path = craft_zip(tmp_path / "a.zip", [Raw("manifest.json", manifest_json([listed])), Raw("x.npy", b"tampered")])
    with pytest.raises(InvalidArchive, match="sha256 mismatch"):
        unpack(path, tmp_path / "out" / "engine")
    assert leftovers(tmp_path / "out") == []


def test_unpack_leaves_nothing_behind_when_content_fails_while_writing(tmp_path):
    """The archive changes after it was verified: the second hashing catches it."""
    path = archive_of(tmp_path / "a.zip", FILES)
    verified = verify(path)
    stale = replace(
        verified.manifest, files=(verified.manifest.files[0], replace(verified.manifest.files[1], sha256="0" * 64))
    )
    dest = tmp_path / "out" / "engine"
    with pytest.raises(InvalidArchive, match="member 'index/vectors.npy' sha256 mismatch"):
        extract(replace(verified, manifest=stale), dest)
    assert leftovers(tmp_path / "out") == []


def test_unpack_checks_the_archive_sha256_when_given(tmp_path):
    path = archive_of(tmp_path / "a.zip", FILES)
    actual = file_sha256(path)
    wrong = actual[:-1] + ("0" if actual[-1] != "0" else "1")  # differs in its last character only
    with pytest.raises(InvalidArchive) as raised:
        unpack(path, tmp_path / "out" / "engine", sha256=wrong)
    assert str(raised.value).endswith(f"sha256 mismatch: expected {wrong}, file is {actual}")
    assert leftovers(tmp_path / "out") == []
    unpack(path, tmp_path / "out" / "engine", sha256=file_sha256(path).upper())
    assert leftovers(tmp_path / "out") == ["engine"]


def test_unpack_refuses_an_existing_destination(tmp_path):
    path = archive_of(tmp_path / "a.zip", FILES)
    dest = tmp_path / "engine"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with pytest.raises(StoreError, match="already exists"):
        unpack(path, dest)
    assert leftovers(dest) == ["mine.txt"] and leftovers(tmp_path) == ["a.zip", "engine"]


def test_unpacked_files_are_the_archive_files_only(tmp_path):
    path = archive_of(tmp_path / "a.zip", FILES)
    unpack(path, tmp_path / "engine")
    found = sorted(p.relative_to(tmp_path / "engine").as_posix() for p in (tmp_path / "engine").rglob("*"))
    assert found == ["index", "index/vectors.npy", "manifest.json", "vocab.json"]


def test_read_manifest_of_a_folder_without_one(tmp_path):
    with pytest.raises(InvalidArchive, match="has no manifest.json: it is not an unpacked engine"):
        read_manifest(tmp_path)


def test_read_manifest_names_the_file_of_a_bad_manifest(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text('{"format": 1}')
    with pytest.raises(InvalidArchive, match="manifest.json.*'engine' must be a non-empty string"):
        read_manifest(tmp_path)


# -- robustness ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sound_archive(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("sound")
    return archive_of(folder / "a.zip", FILES).read_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damaged_archive_is_accepted_intact_or_rejected_as_invalid(tmp_path, sound_archive, data):
    """Flipped, cut or inserted bytes never raise anything but InvalidArchive, and an
    archive that still passes unpacks to exactly the original files."""
    damaged = bytearray(sound_archive)
    at = data.draw(st.integers(0, len(damaged) - 1))
    kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    if kind == "flip":
        damaged[at] ^= data.draw(st.integers(1, 255))
    elif kind == "cut":
        del damaged[at : at + data.draw(st.integers(1, 64))]
    else:
        damaged[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    path = tmp_path / "damaged.zip"
    path.write_bytes(bytes(damaged))
    dest = tmp_path / "unpacked"
    shutil.rmtree(dest, ignore_errors=True)
    try:
        unpack(path, dest)
    except InvalidArchive:
        assert not dest.exists() and not list(tmp_path.glob(".tmp-*"))
        return
    for name, content in FILES.items():
        assert (dest / name).read_bytes() == content
