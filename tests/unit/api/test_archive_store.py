"""DiskArchiveStore on its own: persistence, several processes, limits, failures."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest

from recsys import locks
from recsys.archive import Limits
from recsys.errors import ArchiveConflict, ArchiveTooLarge, InvalidArchive, LockTimeout, StoreError
from recsys_api import archive_store
from recsys_api.archive_store import DiskArchiveStore

from .conftest import make_archive


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "archives"


def install(store, path, **kwargs):
    with open(path, "rb") as stream:
        return store.install(stream, length=path.stat().st_size, **kwargs)


def test_an_empty_store_has_no_current_and_no_generation(folder):
    store = DiskArchiveStore(folder, Limits())

    assert store.current() is None
    assert store.generation() is None
    assert store.open_current() is None


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
    assert stores[0].current().version == max(s.version for s in [stores[0].current(), *stores[0]._state().previous])


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


def test_a_missing_current_file_is_a_store_error(folder, tmp_path):
    store = DiskArchiveStore(folder, Limits())
    installed = install(store, make_archive(tmp_path))
    (folder / installed.file).unlink()

    with pytest.raises(StoreError, match="is missing"):
        store.open_current()


def test_stale_uploads_are_removed_at_start_and_fresh_ones_kept(folder):
    DiskArchiveStore(folder, Limits())
    stale, fresh = folder / "incoming" / "a.zip.part", folder / "incoming" / "b.zip.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - 2 * archive_store.STALE_UPLOAD_SECONDS
    os.utime(stale, (old, old))

    DiskArchiveStore(folder, Limits())

    assert not stale.exists()
    assert fresh.exists()


def test_keep_must_hold_the_current_and_the_previous(folder):
    with pytest.raises(ValueError, match="at least 2"):
        DiskArchiveStore(folder, Limits(), keep=1)
