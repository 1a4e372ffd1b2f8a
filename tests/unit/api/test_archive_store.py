"""DiskArchiveStore on its own: content-addressed files, thin uploads, retention and
garbage collection, the full archive, several processes, limits, failures, and the
migration of a first-wave store."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from recsys import archive as archive_module
from recsys import locks
from recsys.archive import Limits
from recsys.errors import (
    ArchiveConflict,
    ArchiveTooLarge,
    InvalidArchive,
    LockTimeout,
    MissingFiles,
    StoreError,
    UnknownFile,
)
from recsys_api import archive_store
from recsys_api.archive_store import DiskArchiveStore

from .conftest import make_archive, pack_files, sha

A, B, C, D = b"a" * 3000, b"b" * 2000, b"c" * 1000, b"d" * 500


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "archives"


@pytest.fixture
def made(tmp_path):
    return tmp_path / "made"


def install(store, path, **kwargs):
    path = Path(path)
    with open(path, "rb") as stream:
        return store.install(stream, length=path.stat().st_size, **kwargs)


def blob_names(store):
    return set(store.blobs.names())


def full_archive(store):
    opened = store.open_current()
    assert opened is not None
    version, stream = opened
    with stream:
        return version, stream.read()


# -- basics --------------------------------------------------------------------------


def test_an_empty_store_has_no_current_and_no_generation(folder):
    store = DiskArchiveStore(folder, Limits())

    assert store.current() is None
    assert store.generation() is None
    assert store.open_current() is None


def test_an_upload_keeps_every_file_and_the_manifest_bytes_as_blobs(folder, made):
    store = DiskArchiveStore(folder, Limits())
    built = pack_files(made, {"a.bin": A, "sub/b.json": B})

    installed = install(store, built.path)

    assert installed.generation == 1
    assert installed.manifest_sha256 == built.manifest_sha256
    assert installed.engine_bytes == len(A) + len(B) + len(built.manifest_bytes)
    assert (installed.sha256, installed.size) == (None, None)  # no full archive assembled yet
    assert blob_names(store) == {sha(A), sha(B), built.manifest_sha256}
    assert store.blobs.path(built.manifest_sha256).read_bytes() == built.manifest_bytes
    state = json.loads((folder / "state.json").read_text())
    assert state["format"] == 2
    assert [(v["generation"], v["manifest_sha256"], v["bytes"]) for v in state["versions"]] == [
        (1, built.manifest_sha256, installed.engine_bytes)
    ]
    assert list(folder.glob("*.zip")) == []
    assert list(store.incoming.iterdir()) == []


def test_a_second_instance_on_the_same_folder_sees_every_change(folder, tmp_path):
    # Two instances stand for two gunicorn worker processes
    a, b = DiskArchiveStore(folder, Limits()), DiskArchiveStore(folder, Limits())
    assert b.generation() is None  # b caches the empty state

    install(a, make_archive(tmp_path, minutes=1))
    assert b.generation() == 1

    install(b, make_archive(tmp_path, minutes=2))
    assert a.generation() == 2
    assert a.rollback().generation == 3
    assert b.current().generation == 3


def test_the_generation_counter_survives_a_restart(folder, tmp_path):
    install(DiskArchiveStore(folder, Limits()), make_archive(tmp_path, minutes=1))

    reopened = DiskArchiveStore(folder, Limits())
    assert reopened.generation() == 1
    assert install(reopened, make_archive(tmp_path, minutes=2)).generation == 2


# -- thin uploads ----------------------------------------------------------------------


def test_a_thin_upload_reuses_the_files_the_store_holds(folder, made, caplog):
    store = DiskArchiveStore(folder, Limits())
    install(store, pack_files(made, {"a.bin": A, "b.bin": B}, minutes=1).path)
    full = pack_files(made, {"a.bin": A, "b.bin": B, "c.bin": C}, minutes=2)
    thin = archive_module.thin_copy(full, made / "thin.zip", {sha(A), sha(B)})
    assert thin.thin and thin.size < full.size

    with caplog.at_level("INFO", logger="recsys_api.archive_store"):
        installed = install(store, thin.path)

    assert installed.generation == 2
    assert installed.manifest_sha256 == full.manifest_sha256
    assert blob_names(store) >= {sha(A), sha(B), sha(C), full.manifest_sha256}
    assert "thin archive" in caplog.text and "received 1 files" in caplog.text and "reused 2 files" in caplog.text
    # and its full archive is the one the builder packed, byte for byte
    assert full_archive(store)[1] == full.path.read_bytes()


def test_a_thin_upload_lacking_files_is_missing_files_naming_each_and_changes_nothing(folder, made):
    store = DiskArchiveStore(folder, Limits())
    first = install(store, pack_files(made, {"a.bin": A}, minutes=1).path)
    before = blob_names(store)
    thin = pack_files(made, {"a.bin": A, "b.bin": B, "c.bin": C, "d.bin": D}, minutes=2,
                      leave_out={sha(A), sha(B), sha(C)})

    with pytest.raises(MissingFiles, match="leaves out 2 file") as caught:
        install(store, thin.path)

    assert sorted(caught.value.missing, key=lambda m: m["path"]) == [
        {"path": "b.bin", "size": len(B), "sha256": sha(B)},
        {"path": "c.bin", "size": len(C), "sha256": sha(C)},
    ]
    assert store.current() == first
    assert blob_names(store) == before
    assert list(store.incoming.iterdir()) == []


def test_a_left_out_file_is_held_only_when_its_size_matches_too(folder, made):
    # A manifest that names a blob the store holds, with another size, is not served by that blob
    store = DiskArchiveStore(folder, Limits())
    install(store, pack_files(made, {"a.bin": A}, minutes=1).path)
    wrong = archive_module.Manifest(
        engine="stub", version="20261128T212000000000Z", created_at="2026-11-28T21:20:00.000000Z",
        publications=1, sentences=1, files=(archive_module.FileEntry("a.bin", len(A) + 1, sha(A)),),
    )
    out = archive_module.write_archive(made / "wrong.zip", wrong.to_json(), wrong, lambda e: io.BytesIO(),
                                       leave_out={sha(A)})

    with pytest.raises(MissingFiles) as caught:
        install(store, out.path)
    assert caught.value.missing == [{"path": "a.bin", "size": len(A) + 1, "sha256": sha(A)}]


def test_a_file_deleted_by_another_change_while_a_thin_upload_is_staged_is_missing(folder, made, monkeypatch):
    # Given two processes: one staging a thin upload that leaves out a.bin (held: it is in v1)
    store, other = DiskArchiveStore(folder, Limits(), keep=2), DiskArchiveStore(folder, Limits(), keep=2)
    install(store, pack_files(made, {"a.bin": A}, minutes=1).path)
    install(store, pack_files(made, {"b.bin": B}, minutes=2).path)
    thin = pack_files(made, {"a.bin": A, "c.bin": C}, minutes=9, leave_out={sha(A)})
    newer_full = pack_files(made, {"d.bin": D}, minutes=3)
    stage = DiskArchiveStore._stage

    def stage_while_another_upload_drops_v1(self, verified):
        staged = stage(self, verified)
        if self is store:
            install(other, newer_full.path)  # keep=2: v1 is dropped, and a.bin deleted
        return staged

    monkeypatch.setattr(DiskArchiveStore, "_stage", stage_while_another_upload_drops_v1)

    # When the thin upload commits, Then it is refused naming a.bin, and the other upload stays current
    with pytest.raises(MissingFiles, match="no longer holds") as caught:
        install(store, thin.path)
    assert [m["path"] for m in caught.value.missing] == ["a.bin"]
    assert store.current().manifest_sha256 == newer_full.manifest_sha256
    assert list(store.incoming.iterdir()) == []


def test_a_carried_file_deleted_after_staging_is_copied_from_the_upload(folder, made, monkeypatch):
    # A full upload carries a.bin, which the store held when staging began (so it was not staged)
    store, other = DiskArchiveStore(folder, Limits(), keep=2), DiskArchiveStore(folder, Limits(), keep=2)
    install(store, pack_files(made, {"a.bin": A}, minutes=1).path)
    install(store, pack_files(made, {"b.bin": B}, minutes=2).path)
    full = pack_files(made, {"a.bin": A, "c.bin": C}, minutes=9)
    stage = DiskArchiveStore._stage

    def stage_then_drop_v1(self, verified):
        staged = stage(self, verified)
        if self is store:
            install(other, pack_files(made, {"d.bin": D}, minutes=3).path)
            assert not self.blobs.has(sha(A))
        return staged

    monkeypatch.setattr(DiskArchiveStore, "_stage", stage_then_drop_v1)

    installed = install(store, full.path)

    assert installed.manifest_sha256 == full.manifest_sha256
    assert store.blobs.path(sha(A)).read_bytes() == A


# -- bad bytes ----------------------------------------------------------------------------


def tampered(path: Path, old: bytes, new: bytes) -> bytes:
    data = path.read_bytes()
    at = data.find(old)
    assert at > 0  # .bin members are stored uncompressed
    return data[:at] + new + data[at + len(new):]


def test_an_upload_with_a_file_that_does_not_match_its_sha256_is_refused_and_leaves_nothing(folder, made):
    store = DiskArchiveStore(folder, Limits())
    current = install(store, pack_files(made, {"a.bin": A}, minutes=1).path)
    before = blob_names(store)
    data = tampered(pack_files(made, {"v.bin": b"vector-1111"}, minutes=2).path, b"vector-1111", b"vector-2222")

    with pytest.raises(InvalidArchive, match="v.bin"):
        store.install(io.BytesIO(data), length=len(data))

    assert store.current() == current
    assert blob_names(store) == before
    assert list(store.incoming.iterdir()) == []


def test_the_blob_store_refuses_and_deletes_bytes_that_slip_past_verification(folder, made, monkeypatch):
    # A zip that is sound (CRC-32 and all) whose member is not the file its manifest names
    original = pack_files(made, {"v.bin": b"vector-1111"})
    lying = archive_module.write_archive(made / "lying.zip", original.manifest_bytes, original.manifest,
                                         lambda entry: io.BytesIO(b"vector-2222"))
    # Even if the archive's own check let it through, the blob store checks each file it takes in
    monkeypatch.setattr(archive_module, "_check_digest", lambda entry, actual: None)
    store = DiskArchiveStore(folder, Limits())

    with pytest.raises(InvalidArchive, match="do not match its name"):
        install(store, lying.path)

    assert store.current() is None
    assert blob_names(store) == set()
    assert list(store.incoming.iterdir()) == []


# -- retention and garbage collection --------------------------------------------------------


def test_versions_beyond_keep_are_dropped_with_the_files_only_they_used(folder, made):
    store = DiskArchiveStore(folder, Limits(), keep=2)
    v1 = install(store, pack_files(made, {"shared.bin": A, "one.bin": B}, minutes=1).path)
    full_archive(store)  # v1's full archive is assembled
    v2 = install(store, pack_files(made, {"shared.bin": A, "two.bin": C}, minutes=2).path)
    v3 = install(store, pack_files(made, {"shared.bin": A, "three.bin": D}, minutes=3).path)

    assert [v.manifest_sha256 for v in store.versions()] == [v3.manifest_sha256, v2.manifest_sha256]
    assert blob_names(store) == {sha(A), sha(C), sha(D), v2.manifest_sha256, v3.manifest_sha256}
    assert list(store.full.glob("*.zip")) == []  # v1's full archive went with it
    with pytest.raises(UnknownFile):
        store.open_file(sha(B))
    with pytest.raises(UnknownFile):
        store.open_file(v1.manifest_sha256)


def test_rollback_copies_nothing_and_drops_the_version_it_replaces(folder, made):
    store = DiskArchiveStore(folder, Limits(), keep=3)
    v1 = install(store, pack_files(made, {"a.bin": A}, minutes=1).path)
    _, v1_bytes = full_archive(store)
    install(store, pack_files(made, {"a.bin": A, "b.bin": B}, minutes=2).path)
    inode = store.blobs.path(sha(A)).stat().st_ino

    back = store.rollback()

    assert (back.generation, back.manifest_sha256) == (3, v1.manifest_sha256)
    assert store.blobs.path(sha(A)).stat().st_ino == inode  # the same blob, not a copy
    assert blob_names(store) == {sha(A), v1.manifest_sha256}  # b.bin only the replaced version used
    assert back.sha256 is not None  # its full archive, assembled before, is kept
    assert full_archive(store)[1] == v1_bytes
    with pytest.raises(ArchiveConflict, match="no previous engine version"):
        store.rollback()


def test_rollback_without_a_previous_version_is_a_conflict(folder, tmp_path):
    store = DiskArchiveStore(folder, Limits())
    with pytest.raises(ArchiveConflict, match="no engine has been installed yet"):
        store.rollback()
    install(store, make_archive(tmp_path))
    with pytest.raises(ArchiveConflict, match="no previous engine version"):
        store.rollback()


def test_an_older_upload_is_a_conflict_and_changes_nothing(folder, made):
    store = DiskArchiveStore(folder, Limits())
    current = install(store, pack_files(made, {"a.bin": A}, minutes=5).path)

    with pytest.raises(ArchiveConflict, match="is not newer than the current engine"):
        install(store, pack_files(made, {"b.bin": B}, minutes=1).path)
    assert store.current() == current
    assert blob_names(store) == {sha(A), current.manifest_sha256}


# -- the full archive --------------------------------------------------------------------------


def test_the_full_archive_is_the_same_bytes_every_time_it_is_assembled_and_after_a_restart(folder, made):
    store = DiskArchiveStore(folder, Limits())
    built = pack_files(made, {"a.bin": A, "b.json": B, "dir/c.txt": C})
    thin_built = pack_files(made, {"a.bin": A, "b.json": B, "dir/c.txt": C, "d.bin": D}, minutes=1)
    install(store, built.path)
    install(store, archive_module.thin_copy(thin_built, made / "thin.zip", {sha(A), sha(B), sha(C)}).path)

    described, first = full_archive(store)
    shutil.rmtree(store.full)  # the cached archive is gone: assemble it again
    store.full.mkdir()
    restarted = DiskArchiveStore(folder, Limits())
    again_described, again = full_archive(restarted)

    assert first == again == thin_built.path.read_bytes()
    assert described.sha256 == again_described.sha256 == thin_built.sha256
    assert described.size == len(first)
    verified = archive_module.verify(store.full / f"{described.manifest_sha256}.zip", Limits())  # recsys verify
    assert not verified.thin and verified.manifest_bytes == thin_built.manifest_bytes


def test_the_full_archive_is_assembled_once_and_its_sha256_then_shown_by_every_process(folder, made, monkeypatch):
    store, other = DiskArchiveStore(folder, Limits()), DiskArchiveStore(folder, Limits())
    install(store, pack_files(made, {"a.bin": A}).path)
    assert store.current().sha256 is None
    writes = []
    write = archive_module.write_archive
    monkeypatch.setattr(archive_module, "write_archive", lambda *a, **k: writes.append(1) or write(*a, **k))

    threads = [threading.Thread(target=full_archive, args=(s,)) for s in (store, other, store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert writes == [1]
    current = other.current()
    assert current.sha256 == archive_module.file_sha256(store.full / f"{current.manifest_sha256}.zip")
    assert current.size == (store.full / f"{current.manifest_sha256}.zip").stat().st_size
    assert DiskArchiveStore(folder, Limits()).current().sha256 == current.sha256  # after a restart too


def test_a_missing_file_of_the_current_version_is_a_store_error(folder, tmp_path):
    store = DiskArchiveStore(folder, Limits())
    installed = install(store, make_archive(tmp_path))
    os.chmod(store.blobs.path(installed.manifest.files[0].sha256), 0o644)
    store.blobs.remove(installed.manifest.files[0].sha256)

    with pytest.raises(StoreError, match="is missing"):
        store.open_current()
    with pytest.raises(StoreError, match="is missing"):
        store.open_file(installed.manifest.files[0].sha256)


# -- files --------------------------------------------------------------------------------------


def test_open_file_serves_files_and_manifests_of_kept_versions_only(folder, made):
    store = DiskArchiveStore(folder, Limits())
    built = pack_files(made, {"a.bin": A})
    install(store, built.path)

    fp, size = store.open_file(sha(A))
    with fp:
        assert (fp.read(), size) == (A, len(A))
    fp, size = store.open_file(built.manifest_sha256)
    with fp:
        assert fp.read() == built.manifest_bytes
    for name in (sha(B), sha(A).upper(), sha(A)[:-1], "../state.json", "", "x" * 500):
        with pytest.raises(UnknownFile):
            store.open_file(name)


# -- processes and locks -----------------------------------------------------------------------


def test_an_install_waits_for_another_process_holding_the_lock(folder, tmp_path, monkeypatch):
    holder, other = DiskArchiveStore(folder, Limits()), DiskArchiveStore(folder, Limits())
    path = make_archive(tmp_path)
    done, refused = threading.Event(), threading.Event()
    flock = locks.fcntl.flock

    def watched_flock(fd, operation):
        try:
            return flock(fd, operation)
        except BlockingIOError:
            refused.set()  # the other store asked for the lock and was told to wait
            raise

    monkeypatch.setattr(locks.fcntl, "flock", watched_flock)

    with holder._locked():
        thread = threading.Thread(target=lambda: (install(other, path), done.set()))
        thread.start()
        assert refused.wait(30), "the other store never asked for the lock"
        assert not done.is_set()  # it may not install while the lock is held
    thread.join(10)
    assert done.is_set()
    assert holder.generation() == 1


def test_a_lock_held_too_long_is_a_lock_timeout(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(archive_store, "LOCK_WAIT", 0.2)
    holder, other = DiskArchiveStore(folder, Limits()), DiskArchiveStore(folder, Limits())

    with holder._locked(), pytest.raises(LockTimeout, match="waiting for the archive store's lock .*retry later"):
        install(other, make_archive(tmp_path))
    assert list(other.incoming.iterdir()) == []


def test_concurrent_uploads_get_distinct_generations(folder, tmp_path):
    paths = [make_archive(tmp_path, minutes=m) for m in range(1, 7)]
    stores = [DiskArchiveStore(folder, Limits(), keep=10) for _ in paths]
    outcomes: list[object] = []

    def upload(store, path):
        try:
            outcomes.append(install(store, path).generation)
        except ArchiveConflict:
            outcomes.append("conflict")  # an older build arrived after a newer one

    threads = [threading.Thread(target=upload, args=pair) for pair in zip(stores, paths, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    generations = [o for o in outcomes if o != "conflict"]
    assert sorted(generations) == list(range(1, len(generations) + 1))
    assert stores[0].generation() == len(generations)
    assert stores[0].current().version == max(v.version for v in stores[0].versions())


def test_concurrent_thin_uploads_and_rollbacks_leave_a_consistent_store(folder, made):
    # Several processes upload thin archives (each leaving out what the first version has) and roll back
    stores = [DiskArchiveStore(folder, Limits(), keep=2) for _ in range(4)]
    install(stores[0], pack_files(made, {"base.bin": A}, minutes=0).path)
    uploads = [pack_files(made, {"base.bin": A, f"new-{m}.bin": bytes([m]) * 100}, minutes=m, leave_out={sha(A)})
               for m in range(1, 9)]
    errors: list[BaseException] = []

    def work(store, thin):
        try:
            install(store, thin.path)
        except (ArchiveConflict, LockTimeout) as exc:  # older than a newer one, or a lost base: refused
            errors.append(exc)
        try:
            store.rollback()
        except ArchiveConflict as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(stores[i % 4], thin)) for i, thin in enumerate(uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    fresh = DiskArchiveStore(folder, Limits(), keep=2)
    kept = fresh.versions()
    assert 1 <= len(kept) <= 2
    assert [v.generation for v in kept] == sorted((v.generation for v in kept), reverse=True)
    assert blob_names(fresh) == {name for v in kept for name in v.blob_names()}  # every kept file, nothing else
    for version in kept:
        for entry in version.manifest.files:
            fp, size = fresh.open_file(entry.sha256)
            fp.close()
            assert size == entry.size
    assert not [e for e in errors if not isinstance(e, ArchiveConflict)]


# -- limits and partial uploads -------------------------------------------------------------------


def test_a_streamed_upload_over_the_limit_stops_and_leaves_nothing(folder):
    store = DiskArchiveStore(folder, Limits(max_bytes=1024))

    with pytest.raises(ArchiveTooLarge, match="larger than the limit of 1024"):
        store.install(io.BytesIO(b"x" * 5000), length=None)
    assert list(store.incoming.iterdir()) == []


def test_an_upload_shorter_than_its_length_is_invalid_and_changes_nothing(folder, tmp_path):
    store = DiskArchiveStore(folder, Limits())
    install(store, make_archive(tmp_path, minutes=1))
    data = make_archive(tmp_path, minutes=2).read_bytes()

    with pytest.raises(InvalidArchive, match=f"ended after {len(data) // 2} of {len(data)} bytes"):
        store.install(io.BytesIO(data[: len(data) // 2]), length=len(data))
    assert store.generation() == 1
    assert list(store.incoming.iterdir()) == []


def test_only_if_empty_installs_once(folder, tmp_path):
    store = DiskArchiveStore(folder, Limits())

    assert install(store, make_archive(tmp_path, minutes=1), only_if_empty=True).generation == 1
    assert install(store, make_archive(tmp_path, minutes=2), only_if_empty=True) is None
    assert store.generation() == 1


def test_only_if_empty_gives_way_to_a_process_that_installed_meanwhile(folder, tmp_path):
    # Two API processes start at once with the same start archive
    first, second = DiskArchiveStore(folder, Limits()), DiskArchiveStore(folder, Limits())
    path = make_archive(tmp_path)

    class InstalledWhileReceiving(io.BytesIO):
        installed = False

        def read(self, size=-1):
            if not self.installed:
                self.installed = True
                install(first, path, only_if_empty=True)
            return super().read(size)

    result = second.install(InstalledWhileReceiving(path.read_bytes()), length=path.stat().st_size,
                            only_if_empty=True)

    assert result is None
    assert second.generation() == 1
    assert list(second.incoming.iterdir()) == []


def test_an_unreadable_state_file_is_a_store_error_saying_what_to_do(folder, tmp_path):
    store = DiskArchiveStore(folder, Limits())
    install(store, make_archive(tmp_path))
    (folder / "state.json").write_text("{broken")

    with pytest.raises(StoreError, match="unreadable .* restore it from a backup"):
        DiskArchiveStore(folder, Limits()).current()


def test_stale_uploads_and_staging_folders_are_removed_at_start_and_fresh_ones_kept(folder):
    DiskArchiveStore(folder, Limits())
    stale, fresh = folder / "incoming" / "a.zip.part", folder / "incoming" / "b.zip.part"
    staging = folder / "incoming" / ".tmp-stage-123456"
    assembly = folder / "full" / ".tmp-.tmp-assemble-1-2"
    for path in (stale, fresh, assembly):
        path.write_bytes(b"x")
    (staging / "aa").mkdir(parents=True)
    old = time.time() - 2 * archive_store.STALE_UPLOAD_SECONDS
    for path in (stale, staging, assembly):
        os.utime(path, (old, old))

    DiskArchiveStore(folder, Limits())

    assert not stale.exists() and not staging.exists() and not assembly.exists()
    assert fresh.exists()


def test_keep_must_hold_the_current_and_the_previous(folder):
    with pytest.raises(ValueError, match="at least 2"):
        DiskArchiveStore(folder, Limits(), keep=1)


# -- migration of a first-wave store -------------------------------------------------------------


def first_wave_store(folder: Path, made: Path, *, generations=(5, 4)) -> list[archive_module.VerifiedArchive]:
    """The first wave's layout: <version>.zip files and a state.json naming them
    (current first), as its DiskArchiveStore left them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "incoming").mkdir(exist_ok=True)
    built = [pack_files(made, {"shared.bin": A, f"own-{g}.bin": bytes([g]) * 700}, minutes=g) for g in generations]
    entries = []
    for generation, b in zip(generations, built, strict=True):
        name = f"{b.manifest.version}.zip"
        shutil.copyfile(b.path, folder / name)
        entries.append({"generation": generation, "file": name, "sha256": b.sha256, "size": b.size,
                        "installed_at": f"2026-11-28T21:2{generation}:00.000000Z", "manifest": b.manifest.to_dict()})
    state = {"generation": generations[0], "current": entries[0], "previous": entries[1:],
             "history": [{"generation": g, "version": "v", "action": "upload", "at": "t"} for g in generations]}
    (folder / "state.json").write_text(json.dumps(state, indent=1))
    return built


def test_a_first_wave_store_is_migrated_at_start(folder, made, caplog):
    current, previous = first_wave_store(folder, made)

    with caplog.at_level("INFO", logger="recsys_api.archive_store"):
        store = DiskArchiveStore(folder, Limits())

    assert [(v.generation, v.manifest_sha256) for v in store.versions()] == [
        (5, current.manifest_sha256), (4, previous.manifest_sha256)
    ]
    assert store.current().installed_at == "2026-11-28T21:25:00.000000Z"
    assert list(folder.glob("*.zip")) == []  # the old archives are gone
    assert blob_names(store) == {sha(A), sha(bytes([5]) * 700), sha(bytes([4]) * 700),
                                 current.manifest_sha256, previous.manifest_sha256}
    assert "migrated archive store" in caplog.text
    assert full_archive(store)[1] == current.path.read_bytes()  # the same writer: the same bytes
    assert store.rollback().manifest_sha256 == previous.manifest_sha256
    assert install(store, pack_files(made, {"x.bin": B}, minutes=30).path).generation == 7
    assert len(json.loads((folder / "state.json").read_text())["history"]) == 4


def test_the_migration_is_idempotent(folder, made):
    first_wave_store(folder, made)
    DiskArchiveStore(folder, Limits())
    state = (folder / "state.json").read_bytes()
    blobs = blob_names(DiskArchiveStore(folder, Limits()))

    again = DiskArchiveStore(folder, Limits())

    assert (folder / "state.json").read_bytes() == state
    assert blob_names(again) == blobs


def test_a_migration_interrupted_before_the_state_is_written_starts_again(folder, made, monkeypatch):
    current, _ = first_wave_store(folder, made)
    old_state = (folder / "state.json").read_bytes()

    def crash(self, state):
        raise OSError("killed")

    monkeypatch.setattr(DiskArchiveStore, "_write_state", crash)
    with pytest.raises(OSError, match="killed"):
        DiskArchiveStore(folder, Limits())
    assert (folder / "state.json").read_bytes() == old_state  # nothing named yet
    assert len(list(folder.glob("*.zip"))) == 2
    monkeypatch.undo()

    store = DiskArchiveStore(folder, Limits())

    assert store.current().manifest_sha256 == current.manifest_sha256
    assert list(folder.glob("*.zip")) == []


def test_a_migration_interrupted_after_the_state_deletes_the_old_zips_at_the_next_start(folder, made, monkeypatch):
    first_wave_store(folder, made)
    monkeypatch.setattr(DiskArchiveStore, "_drop_old_zips", lambda self: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        DiskArchiveStore(folder, Limits())
    monkeypatch.undo()
    assert len(list(folder.glob("*.zip"))) == 2

    store = DiskArchiveStore(folder, Limits())

    assert list(folder.glob("*.zip")) == []
    assert store.generation() == 5


def test_a_migration_drops_a_missing_previous_archive_and_refuses_a_missing_current_one(folder, made, tmp_path):
    current, previous = first_wave_store(folder, made)
    (folder / f"{previous.manifest.version}.zip").unlink()

    store = DiskArchiveStore(folder, Limits())
    assert [v.manifest_sha256 for v in store.versions()] == [current.manifest_sha256]

    other = tmp_path / "other"
    current, _ = first_wave_store(other, made, generations=(8, 7))
    (other / f"{current.manifest.version}.zip").unlink()
    with pytest.raises(StoreError, match="cannot migrate .* its current archive failed"):
        DiskArchiveStore(other, Limits())
    assert (other / "state.json").exists() and "versions" not in json.loads((other / "state.json").read_text())


def test_a_start_archive_kept_in_the_store_folder_is_not_taken_for_a_first_wave_archive(folder, tmp_path):
    folder.mkdir(parents=True)
    mine = folder / "start-engine.zip"
    shutil.copyfile(make_archive(tmp_path), mine)

    DiskArchiveStore(folder, Limits())

    assert mine.exists()


def test_a_full_archive_deleted_by_hand_is_assembled_again_with_the_same_bytes(folder, made):
    store = DiskArchiveStore(folder, Limits())
    install(store, pack_files(made, {"a.bin": A}).path)
    described, first = full_archive(store)

    for path in store.full.glob("*.zip"):
        path.unlink()
    assert store.current().sha256 is None

    again, second = full_archive(store)
    assert second == first and again.sha256 == described.sha256
