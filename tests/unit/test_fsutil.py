"""recsys.fsutil: atomic replacement (old or new content, never half, no temporary file
left) and synced creation."""

from __future__ import annotations

import pytest

from recsys.fsutil import atomic_output, create_synced, hash_file, write_atomic, write_synced


def test_write_atomic_replaces_the_content_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "STATE"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["STATE"]


def test_a_failed_atomic_write_keeps_the_old_content_and_removes_its_temporary_file(tmp_path):
    path = tmp_path / "state.json"
    write_atomic(path, b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(path) as out:
        out.write(b"half of the new")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_the_temporary_file_is_named_for_the_store_to_find(tmp_path):
    seen = []
    with atomic_output(tmp_path / "CURRENT") as out:
        seen = [p.name for p in tmp_path.iterdir()]
        out.write(b"x")
    assert len(seen) == 1 and seen[0].startswith(".tmp-current-")


def test_an_atomic_output_can_be_read_back_before_it_replaces_the_file(tmp_path):
    path = tmp_path / "engine.zip"
    with atomic_output(path, prefix=path.name) as out:
        out.write(b"abc")
        out.flush()
        out.seek(0)
        assert out.read() == b"abc"
    assert hash_file(path) == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3)


def test_synced_creation_refuses_an_existing_file(tmp_path):
    write_synced(tmp_path / "a", b"1")
    with pytest.raises(FileExistsError), create_synced(tmp_path / "a"):
        pass
    assert (tmp_path / "a").read_bytes() == b"1"
