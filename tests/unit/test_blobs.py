"""The content-addressed blob store shared by the API and the worker machines."""

from __future__ import annotations

import hashlib
import os

import pytest

from recsys.blobs import BlobStore, valid_sha256
from recsys.errors import InvalidArchive


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_chunks_are_checked_before_they_become_a_blob(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    data = b"x" * 3000
    path = store.add_chunks(sha(data), len(data), [data[:1000], data[1000:]])
    assert path.read_bytes() == data
    assert store.has(sha(data)) and store.size(sha(data)) == 3000
    assert list(store.names()) == [sha(data)]
    assert path.stat().st_mode & 0o222 == 0


def test_bytes_that_do_not_match_the_name_are_refused_and_deleted(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    good = b"good bytes"
    with pytest.raises(InvalidArchive, match="do not match its name"):
        store.add_chunks(sha(good), len(good), [b"evil bytes"])
    assert not store.has(sha(good))
    assert store.partial_bytes(sha(good)) == 0
    with pytest.raises(InvalidArchive, match="more arrived"):
        store.add_chunks(sha(good), len(good), [good, b"!"])
    assert store.partial_bytes(sha(good)) == 0


def test_an_interrupted_download_resumes_where_it_stopped(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    data = os.urandom(5000)
    first = store.partial(sha(data), len(data))
    first.write(data[:2048])
    first.close()  # the download broke off
    again = BlobStore(tmp_path / "blobs").partial(sha(data), len(data))
    assert again.offset == 2048
    again.write(data[2048:])
    assert again.finish().read_bytes() == data
    assert store.partial_bytes(sha(data)) == 0


def test_a_resumed_download_with_a_bad_prefix_fails_the_whole_check(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    data = b"abcdefgh" * 100
    first = store.partial(sha(data), len(data))
    first.write(b"X" * 100)  # corrupt prefix
    first.close()
    again = store.partial(sha(data), len(data))
    again.write(data[100:])
    with pytest.raises(InvalidArchive):
        again.finish()
    assert store.partial_bytes(sha(data)) == 0 and not store.has(sha(data))


def test_local_files_are_linked_in_after_their_check(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    source = tmp_path / "built.npy"
    source.write_bytes(b"vectors")
    path = store.add_file(source, sha(b"vectors"), 7)
    assert path.read_bytes() == b"vectors"
    assert os.path.samefile(path, source)  # same disk: a hard link, no copy
    other = tmp_path / "other"
    other.write_bytes(b"not it")
    with pytest.raises(InvalidArchive, match="does not match its manifest entry"):
        store.add_file(other, sha(b"vectors-2"), 6)
    assert not store.has(sha(b"vectors-2"))
    assert [p.name for p in (tmp_path / "blobs").iterdir() if p.name.startswith(".tmp-")] == []


def test_versions_link_blobs_and_collect_deletes_unreferenced_ones(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    a, b = b"segment a", b"segment b"
    store.add_chunks(sha(a), len(a), [a])
    store.add_chunks(sha(b), len(b), [b])
    store.link(sha(a), tmp_path / "versions" / "v1" / "seg" / "a.bin")
    assert (tmp_path / "versions" / "v1" / "seg" / "a.bin").read_bytes() == a
    assert store.collect([sha(a)]) == (1, len(b))
    assert store.has(sha(a)) and not store.has(sha(b))


def test_names_are_validated():
    assert valid_sha256("0" * 64)
    assert not valid_sha256("0" * 63) and not valid_sha256("G" * 64) and not valid_sha256(None)
    with pytest.raises(ValueError):
        BlobStore.path(BlobStore.__new__(BlobStore), "../etc/passwd")
