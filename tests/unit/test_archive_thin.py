"""Thin archives (files the receiver holds are left out) and deterministic archives."""

from __future__ import annotations

import hashlib
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recsys.archive import MANIFEST_NAME, extract, pack, thin_copy, verify, write_archive
from recsys.engine import EngineMetadata
from recsys.errors import InvalidArchive, MissingFiles

FILES = {"segments/s1/vectors.npy": b"\x01" * 5000, "segments/s2/vectors.npy": b"\x02" * 300, "state.json": b"{}"}
WHEN = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "engine"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def packed(folder: Path, out: Path, **kwargs):
    return pack(folder, out, engine="tiny", metadata=EngineMetadata(publications=2, sentences=3), created_at=WHEN,
                **kwargs)


def test_a_thin_archive_lists_every_file_but_carries_only_the_new_ones(folder, tmp_path):
    old = sha(FILES["segments/s1/vectors.npy"])
    thin = packed(folder, tmp_path / "thin.zip", leave_out={old})
    with zipfile.ZipFile(thin.path) as z:
        assert sorted(z.namelist()) == [MANIFEST_NAME, "segments/s2/vectors.npy", "state.json"]
    assert len(thin.manifest.files) == 3 and thin.thin
    assert thin.members == {"segments/s2/vectors.npy", "state.json"}
    held = {old}
    verified = verify(thin.path, have=lambda entry: entry.sha256 in held)
    assert verified.thin and verified.members == thin.members
    assert verified.manifest_sha256 == thin.manifest_sha256 == sha(verified.manifest_bytes)


def test_a_thin_archive_is_refused_naming_the_files_the_receiver_lacks(folder, tmp_path):
    old = sha(FILES["segments/s1/vectors.npy"])
    thin = packed(folder, tmp_path / "thin.zip", leave_out={old})
    with pytest.raises(MissingFiles, match="segments/s1/vectors.npy") as caught:
        verify(thin.path, have=lambda entry: False)
    assert caught.value.missing == [{"path": "segments/s1/vectors.npy", "size": 5000, "sha256": old}]
    assert caught.value.status == 409 and caught.value.code == "missing_files"
    with pytest.raises(InvalidArchive, match="has no such member"):
        verify(thin.path)  # without `have`, every file must be carried


def test_the_same_version_always_gives_the_same_bytes(folder, tmp_path):
    full = packed(folder, tmp_path / "full.zip")
    blobs = {entry.sha256: folder / entry.path for entry in full.manifest.files}
    again = write_archive(tmp_path / "again.zip", full.manifest_bytes, full.manifest,
                          lambda entry: open(blobs[entry.sha256], "rb"))
    assert again.path.read_bytes() == full.path.read_bytes()
    assert again.sha256 == full.sha256 and not again.thin


def test_thin_copy_keeps_the_manifest_and_checks_the_members(folder, tmp_path):
    full = verify(packed(folder, tmp_path / "full.zip").path)
    thin = thin_copy(full, tmp_path / "thin.zip", {sha(FILES["state.json"])})
    assert thin.manifest_bytes == full.manifest_bytes
    assert thin.members == {"segments/s1/vectors.npy", "segments/s2/vectors.npy"}
    assert verify(thin.path, have=lambda e: e.path == "state.json").members == thin.members
    restored = extract(full, tmp_path / "unpacked")
    assert restored.version == full.manifest.version
