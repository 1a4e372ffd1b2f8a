"""Engine store: install, activate, prune, lock, crash cleanup, concurrency; blobs, versions
assembled by hard links, garbage collection, adoption of a first-wave store."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import shutil
import threading
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import recsys.store as store_module
from recsys.archive import Limits, Manifest, file_sha256, pack, unpack, verify
from recsys.engine import EngineMetadata
from recsys.errors import InvalidArchive, LockTimeout, MissingFiles, StoreError
from recsys.store import EngineStore
from tests.support.engines import TinyEngine, publications
from tests.support.store_children import install as install_in_child

START = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> list[Path]:
    """Four archives of the tiny engine, one day apart (versions sort by age)."""
    where = tmp_path_factory.mktemp("archives")
    made = []
    for day in range(4):
        engine = TinyEngine()
        engine.fit(publications(3 + day))
        folder = where / f"saved{day}"
        folder.mkdir()
        metadata = engine.save(folder)
        out = where / f"engine{day}.zip"
        pack(folder, out, engine="tiny", metadata=metadata, created_at=START + timedelta(days=day))
        made.append(out)
    return made


def version(day: int) -> str:
    return (START + timedelta(days=day)).strftime("%Y%m%dT%H%M%S%fZ")


@pytest.fixture
def store(tmp_path) -> EngineStore:
    return EngineStore(tmp_path / "engines", engines={"tiny"})


@pytest.fixture
def extracts(monkeypatch) -> list[str]:
    """Every version the store assembles (from an archive or from blobs), by version."""
    calls: list[str] = []
    real = store_module.EngineStore._assemble

    def counting(self, manifest_sha256, manifest):
        calls.append(manifest.version)
        return real(self, manifest_sha256, manifest)

    monkeypatch.setattr(store_module.EngineStore, "_assemble", counting)
    return calls


def temp_leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in [*root.iterdir(), *(root / "versions").iterdir()] if p.name.startswith(".tmp-"))


# -- reading ---------------------------------------------------------------------------


def test_a_new_store_is_empty(store):
    assert store.current() is None
    assert store.generation == 0
    assert store.versions() == []
    assert (store.root / "versions").is_dir()


def test_install_makes_the_archive_current(store, archives):
    installed = store.install(archives[0], generation=1)

    assert (installed.version, installed.generation) == (version(0), 1)
    assert installed.path == store.root / "versions" / version(0)
    assert installed.sha256 == file_sha256(archives[0])
    assert installed.manifest.engine == "tiny" and installed.manifest.publications == 3
    assert store.current() == installed and store.generation == 1 and store.has(version(0))
    current = json.loads((store.root / "CURRENT").read_text())
    assert current["version"] == version(0) and current["generation"] == 1
    assert current["sha256"] == installed.sha256 and current["installed_at"].endswith("Z")
    assert TinyEngine.load(installed.path).publication_count == 3
    assert temp_leftovers(store.root) == []


def test_current_is_read_again_only_when_the_current_file_changes(store, archives, monkeypatch):
    store.install(archives[0], generation=1)
    reads = []
    real = EngineStore._read_current

    def counting(self):
        if self is store:
            reads.append(1)
        return real(self)

    monkeypatch.setattr(EngineStore, "_read_current", counting)
    first = store.current()
    assert store.current() is first and store.current() is first
    assert len(reads) == 1

    other = EngineStore(store.root, engines={"tiny"})  # another process of the machine
    other.install(archives[1], generation=2)
    assert store.current().version == version(1)
    assert len(reads) == 2


def test_has_refuses_names_that_are_not_versions(store):
    assert not store.has("..") and not store.has("../engines") and not store.has("")


# -- switching and generations -----------------------------------------------------------


def test_the_store_makes_current_what_it_is_told(store, archives):
    # The generation rule is the caller's (recsys_workers.rollout), not the store's
    store.install(archives[0], generation=5)

    lower = store.install(archives[1], generation=4)

    assert (lower.version, lower.generation) == (version(1), 4)
    assert store.current() == lower


def test_install_of_a_version_already_on_disk_only_switches_to_it(store, archives, extracts):
    store.install(archives[0], generation=1)
    store.install(archives[1], generation=2)

    rolled_back = store.install(archives[0], generation=3)

    assert (rolled_back.version, rolled_back.generation) == (version(0), 3)
    assert rolled_back.sha256 == file_sha256(archives[0])
    assert len(extracts) == 2


def test_the_same_version_at_a_new_generation_is_switched_without_unpacking(store, archives, extracts):
    store.install(archives[0], generation=1)
    again = store.install(archives[0], generation=2)
    assert (again.version, again.generation) == (version(0), 2) and len(extracts) == 1


def test_install_rejects_a_negative_generation(store, archives):
    with pytest.raises(ValueError, match="generation must be a whole number >= 0"):
        store.install(archives[0], generation=-1)


# -- failures leave the current engine ---------------------------------------------------


def test_install_with_a_wrong_sha256_changes_nothing(store, archives):
    before = store.install(archives[0], generation=1)
    actual = file_sha256(archives[1])
    # A wrong hash that starts like the real one: the message shows both in full.
    wrong = actual[:12] + ("0" if actual[12] != "0" else "1") + actual[13:]
    with pytest.raises(InvalidArchive) as raised:
        store.install(archives[1], generation=2, sha256=wrong)
    assert f"sha256 mismatch: expected {wrong}, file is {actual} " in str(raised.value)
    assert store.current() == before
    assert store.versions() == [version(0)] and temp_leftovers(store.root) == []


def test_install_of_a_corrupt_archive_changes_nothing(store, archives, tmp_path):
    before = store.install(archives[0], generation=1)
    corrupt = tmp_path / "corrupt.zip"
    data = bytearray(archives[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(InvalidArchive):
        store.install(corrupt, generation=2)
    assert store.current() == before and store.versions() == [version(0)]
    assert temp_leftovers(store.root) == []


def test_install_of_an_engine_not_installed_here_is_refused(tmp_path, archives):
    store = EngineStore(tmp_path / "engines", engines={"lexical"})
    with pytest.raises(InvalidArchive, match="archive is for engine 'tiny', which is not installed here"):
        store.install(archives[0], generation=1)
    assert store.current() is None and store.versions() == []


# -- activate (rollback) ---------------------------------------------------------------


def test_activate_rolls_back_to_a_version_on_disk(store, archives, extracts):
    store.install(archives[0], generation=1)
    store.install(archives[1], generation=2)

    rolled_back = store.activate(version(0), generation=3)

    assert (rolled_back.version, rolled_back.generation) == (version(0), 3)
    assert rolled_back.sha256 == file_sha256(archives[0])  # remembered from its install
    assert store.current() == rolled_back and len(extracts) == 2


def test_activate_of_a_version_not_on_disk_names_the_versions(store, archives):
    store.install(archives[0], generation=1)
    with pytest.raises(StoreError) as caught:
        store.activate(version(3), generation=2)
    assert str(caught.value) == (
        f"engine version {version(3)!r} is not on this machine's disk (on disk: {version(0)}); "
        "install its archive instead"
    )


# -- prune -----------------------------------------------------------------------------


def test_prune_keeps_the_current_and_the_most_recently_used_versions(store, archives):
    for day in range(3):
        store.install(archives[day], generation=day + 1)
    assert store.versions() == [version(1), version(2)]

    store.activate(version(1), generation=4)  # rollback
    store.install(archives[3], generation=5)

    assert store.versions() == [version(1), version(3)]  # version 2 was used less recently than 1
    assert store.current().version == version(3)
    assert temp_leftovers(store.root) == []


def test_prune_with_keep_one_keeps_only_the_current_version(tmp_path, archives):
    store = EngineStore(tmp_path / "engines", keep=1, engines={"tiny"})
    store.install(archives[0], generation=1)
    store.install(archives[1], generation=2)
    assert store.versions() == [version(1)]


def test_prune_without_history_keeps_the_replaced_version_and_drops_unused_ones(tmp_path, archives):
    root = tmp_path / "engines"
    roomy = EngineStore(root, keep=10, engines={"tiny"})
    roomy.install(archives[3], generation=1)
    roomy.install(archives[0], generation=2)
    (root / "history").unlink()  # as if the versions were unpacked by an older recsys

    EngineStore(root, keep=2, engines={"tiny"}).install(archives[1], generation=3)

    assert EngineStore(root).versions() == [version(0), version(1)]  # current and previous; the newer 3 goes


def test_keep_must_include_the_current_version(tmp_path):
    with pytest.raises(ValueError, match="keep must be at least 1"):
        EngineStore(tmp_path, keep=0)


# -- lock ------------------------------------------------------------------------------


def test_lock_times_out_naming_the_lock_file_and_its_holder(tmp_path):
    holder = EngineStore(tmp_path / "engines")
    waiter = EngineStore(tmp_path / "engines")
    with holder.lock():
        with pytest.raises(LockTimeout) as caught:
            with waiter.lock(timeout=0.05):
                pass
    message = str(caught.value)
    assert str(tmp_path / "engines" / ".lock") in message and "held by process" in message
    with waiter.lock(timeout=0.05):  # free again
        pass


def test_install_waits_for_the_lock_then_finds_the_work_done(tmp_path, archives, extracts):
    holder = EngineStore(tmp_path / "engines", engines={"tiny"})
    waiter = EngineStore(tmp_path / "engines", engines={"tiny"})
    results = []
    with holder.lock():
        thread = threading.Thread(target=lambda: results.append(waiter.install(archives[0], generation=1)))
        thread.start()
        holder.install(archives[0], generation=1)  # re-entrant for its holder
    thread.join(timeout=60)
    assert results[0].version == version(0) and results[0].generation == 1
    assert len(extracts) == 1


def test_install_times_out_when_another_installer_holds_the_lock(tmp_path, archives):
    holder = EngineStore(tmp_path / "engines", engines={"tiny"})
    waiter = EngineStore(tmp_path / "engines", engines={"tiny"})
    with holder.lock(), pytest.raises(LockTimeout):
        waiter.install(archives[0], generation=1, lock_timeout=0.05)
    assert waiter.current() is None


def test_threads_of_one_store_install_once(store, archives, extracts):
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(store.install(archives[0], generation=1))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.version for r in results] == [version(0)] * 4 and len(extracts) == 1


# -- crash cleanup ---------------------------------------------------------------------


def crash_leftovers(root: Path) -> None:
    """What a process killed in the middle of an install leaves behind."""
    half = root / "versions" / ".tmp-unpack-3f2a"
    (half / "index").mkdir(parents=True)
    (half / "index" / "lengths.npy").write_bytes(b"\x93NUMPY half")
    (root / "versions" / version(3)).mkdir()  # a version folder without its manifest
    (root / "versions" / version(3) / "publications.json").write_text("{")
    (root / ".tmp-current-77aa").write_text('{"version"')
    (root / ".tmp-download-1b2c").write_bytes(b"PK partial")


def test_open_removes_the_leftovers_of_a_crashed_install(tmp_path, archives):
    root = tmp_path / "engines"
    before = EngineStore(root, engines={"tiny"}).install(archives[0], generation=1)
    crash_leftovers(root)

    store = EngineStore(root, engines={"tiny"})

    assert temp_leftovers(root) == []
    assert store.versions() == [version(0)] and not (root / "versions" / version(3)).exists()
    assert store.current() == before


def test_open_leaves_temporary_files_alone_while_another_process_installs(tmp_path):
    root = tmp_path / "engines"
    holder = EngineStore(root)
    crash_leftovers(root)
    with holder.lock():
        EngineStore(root)  # must not delete what the lock holder is writing
        assert len(temp_leftovers(root)) == 3
    EngineStore(root)
    assert temp_leftovers(root) == []


def test_install_keeps_a_download_its_caller_holds_under_the_lock(store, archives):
    with store.lock():
        download = store.temp_path()
        download.write_bytes(archives[0].read_bytes())
        installed = store.install(download, generation=1)
        assert download.exists()
    download.unlink()
    assert installed.version == version(0)


def test_a_broken_current_file_is_reported_and_replaced_by_the_next_install(store, archives):
    store.install(archives[0], generation=1)
    (store.root / "CURRENT").write_text("{not json")
    with pytest.raises(StoreError, match="CURRENT' is unreadable .*install an engine again"):
        store.current()
    assert store.install(archives[1], generation=1).version == version(1)
    assert store.current().version == version(1)


def test_a_current_file_naming_a_missing_version_is_reported(store, archives):
    store.install(archives[0], generation=1)
    (store.root / "CURRENT").write_text(json.dumps({"version": version(2), "generation": 1}))
    with pytest.raises(StoreError, match=f"names version {version(2)}, which is not usable on disk"):
        store.current()


# -- several processes -----------------------------------------------------------------


def test_concurrent_installers_in_several_processes_unpack_once(tmp_path, archives):
    root, marker, processes = tmp_path / "engines", tmp_path / "unpacks.log", 4
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    children = [
        context.Process(target=install_in_child, args=(str(root), str(archives[2]), str(marker), barrier, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    reports = [results.get(timeout=300) for _ in children]
    for child in children:
        child.join(timeout=60)

    errors = [r[2] for r in reports if r[0] == "error"]
    assert not errors, "\n".join(errors)
    assert len(marker.read_text().splitlines()) == 1  # unpacked exactly once
    assert {r[2:] for r in reports} == {(version(2), 1, version(2))}  # everyone ends with the same CURRENT
    assert [child.exitcode for child in children] == [0] * processes
    assert EngineStore(root).current().version == version(2)
    assert temp_leftovers(root) == [] and EngineStore(root).versions() == [version(2)]


# -- content-addressed: blobs, versions assembled by hard links ------------------------------


def pack_files(where: Path, files: dict[str, bytes], day: int, *, leave_out: tuple[str, ...] = ()) -> Path:
    """An archive of engine 'tiny' with exactly ``files`` (path -> bytes), made on ``day``."""
    folder = where / f"files{day}"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    out = where / f"files{day}{'-thin' if leave_out else ''}.zip"
    pack(folder, out, engine="tiny", metadata=EngineMetadata(1, 1), created_at=START + timedelta(days=day),
         leave_out={sha(files[rel]) for rel in leave_out})
    shutil.rmtree(folder)
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inode(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


SHARED, OLD, NEW = b"unchanged segment " * 100, b"old segment " * 50, b"new segment " * 70


def test_an_installed_version_is_hard_links_to_checked_blobs_and_the_exact_manifest(store, archives):
    installed = store.install(archives[0], generation=1)

    manifest_bytes = (installed.path / "manifest.json").read_bytes()
    assert installed.manifest_sha256 == sha(manifest_bytes) == verify(archives[0]).manifest_sha256
    assert manifest_bytes == verify(archives[0]).manifest_bytes  # the exact bytes, not re-serialised
    for entry in installed.manifest.files:
        assert inode(installed.path / entry.path) == inode(store.blobs.path(entry.sha256))
    assert inode(installed.path / "manifest.json") == inode(store.blobs.path(installed.manifest_sha256))
    assert set(store.blobs.names()) == {e.sha256 for e in installed.manifest.files} | {installed.manifest_sha256}
    assert json.loads((store.root / "CURRENT").read_text())["manifest_sha256"] == installed.manifest_sha256


def test_versions_that_share_files_share_their_bytes(store, tmp_path):
    first = store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": OLD}, 0), generation=1)
    second = store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": NEW}, 1), generation=2)

    assert inode(first.path / "a.bin") == inode(second.path / "a.bin")
    assert inode(first.path / "b.bin") != inode(second.path / "b.bin")
    assert store.missing(second.manifest) == []


def test_a_thin_archive_installs_when_the_files_it_leaves_out_are_here(store, tmp_path):
    store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": OLD}, 0), generation=1)

    thin = pack_files(tmp_path, {"a.bin": SHARED, "b.bin": NEW}, 1, leave_out=("a.bin",))
    installed = store.install(thin, generation=2)

    assert (installed.path / "a.bin").read_bytes() == SHARED and (installed.path / "b.bin").read_bytes() == NEW


def test_a_thin_archive_lacking_files_is_refused_naming_them(store, tmp_path):
    thin = pack_files(tmp_path, {"a.bin": SHARED, "b.bin": NEW}, 1, leave_out=("a.bin",))
    with pytest.raises(MissingFiles) as caught:
        store.install(thin, generation=1)
    assert [m["path"] for m in caught.value.missing] == ["a.bin"]
    assert store.current() is None and store.versions() == [] and temp_leftovers(store.root) == []


def add_blobs(store: EngineStore, archive: Path) -> tuple[str, Manifest]:
    """What a rollout does: the manifest blob, then every file it lacks, from the archive."""
    verified = verify(archive)
    with zipfile.ZipFile(archive) as opened:
        for entry in store.missing(verified.manifest):
            store.blobs.add_chunks(entry.sha256, entry.size, [opened.read(entry.path)])
    return store.add_manifest(verified.manifest_bytes), verified.manifest


def test_a_version_is_assembled_from_blobs_once_they_are_all_here(store, tmp_path, extracts):
    store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": OLD}, 0), generation=1)
    archive = pack_files(tmp_path, {"a.bin": SHARED, "b.bin": NEW, "c/d.json": b"{}"}, 1)
    manifest = verify(archive).manifest
    assert [e.path for e in store.missing(manifest)] == ["b.bin", "c/d.json"]

    manifest_sha256, _ = add_blobs(store, archive)
    installed = store.install_version(manifest_sha256, generation=2)

    assert (installed.version, installed.generation, installed.manifest_sha256) == (version(1), 2, manifest_sha256)
    assert (installed.path / "c" / "d.json").read_bytes() == b"{}"
    assert store.current() == installed and extracts == [version(0), version(1)]


def test_a_partial_set_of_files_never_becomes_a_version(store, tmp_path):
    before = store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": OLD}, 0), generation=1)
    archive = pack_files(tmp_path, {"a.bin": SHARED, "b.bin": NEW}, 1)
    manifest_sha256 = store.add_manifest(verify(archive).manifest_bytes)  # but not b.bin's blob

    with pytest.raises(StoreError, match=r"1 of its 2 files are not on this machine: 'b.bin'"):
        store.install_version(manifest_sha256, generation=2)

    assert store.current() == before and store.versions() == [version(0)]
    assert temp_leftovers(store.root) == []


def test_duplicate_files_are_one_blob_and_one_download(store, tmp_path):
    manifest = verify(pack_files(tmp_path, {"a.bin": SHARED, "copy.bin": SHARED}, 0)).manifest
    assert [e.path for e in store.missing(manifest)] == ["a.bin"]


def test_pruned_versions_free_the_blobs_no_kept_version_uses(tmp_path):
    store = EngineStore(tmp_path / "engines", keep=2, engines={"tiny"})
    third = b"third segment " * 10
    store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": OLD}, 0), generation=1)
    store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": NEW}, 1), generation=2)
    stale = store.blobs.partial(sha(b"an abandoned download"), 100)
    stale.write(b"an aband")
    stale.close()

    last = store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": third}, 2), generation=3)

    assert store.versions() == [version(1), version(2)]
    kept = set(store.blobs.names())
    assert sha(OLD) not in kept and {sha(SHARED), sha(NEW), sha(third), last.manifest_sha256} <= kept
    assert len(kept) == 5  # 3 files, 2 manifests
    assert store.blobs.partial_bytes(sha(b"an abandoned download")) == 0


def test_a_rollback_needs_no_blob_and_keeps_the_current_ones(store, tmp_path):
    store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": OLD}, 0), generation=1)
    store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": NEW}, 1), generation=2)
    rolled_back = store.activate(version(0), generation=3)
    assert (rolled_back.path / "b.bin").read_bytes() == OLD and store.blobs.has(sha(NEW))


@pytest.mark.parametrize(
    ("limits", "engines", "message"),
    [
        (Limits(), {"lexical"}, "of engine 'tiny', which is not installed here"),
        (Limits(max_entries=2), {"tiny"}, "lists 2 files, over the limit of 2"),
        (Limits(max_file_bytes=1000), {"tiny"}, "'a.bin' of version .* is 1800 bytes, over the limit of 1000"),
        (Limits(max_bytes=2000), {"tiny"}, "is 2400 bytes, over the limit of 2000"),
    ],
)
def test_a_manifest_to_download_is_checked_against_the_engines_and_limits(tmp_path, limits, engines, message):
    store = EngineStore(tmp_path / "engines", limits=limits, engines=engines)
    raw = verify(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": OLD}, 0)).manifest_bytes
    with pytest.raises(InvalidArchive, match=message):
        store.accept_manifest(raw)


# -- first-wave stores ---------------------------------------------------------------------


def first_wave_store(root: Path, archives: list[Path]) -> None:
    """A store as the first wave left it: versions of plain files, no blobs/."""
    for generation, archive in enumerate(archives, start=1):
        verified = verify(archive)
        unpack(archive, root / "versions" / verified.manifest.version)
        record = {"version": verified.manifest.version, "generation": generation, "sha256": verified.sha256,
                  "installed_at": "2026-11-01T12:00:00.000000Z"}
        (root / "CURRENT").write_text(json.dumps(record))
    (root / "history").write_text("[]")


def test_a_first_wave_store_is_adopted_into_blobs_at_open(tmp_path, caplog):
    root = tmp_path / "engines"
    first_wave_store(root, [pack_files(tmp_path, {"a.bin": SHARED, "b.bin": OLD}, 0),
                            pack_files(tmp_path, {"a.bin": SHARED, "b.bin": NEW}, 1)])
    assert not (root / "blobs").exists()

    with caplog.at_level(logging.INFO, logger="recsys.store"):
        store = EngineStore(root, engines={"tiny"})

    current = store.current()
    assert (current.version, current.generation) == (version(1), 2)
    assert current.manifest_sha256 == sha((current.path / "manifest.json").read_bytes())
    old = root / "versions" / version(0)
    for folder in (old, current.path):
        for path in ("a.bin", "b.bin", "manifest.json"):
            assert inode(folder / path) == inode(store.blobs.path(sha((folder / path).read_bytes())))
    assert inode(old / "a.bin") == inode(current.path / "a.bin")  # the two copies became one
    assert "adopted 3 files" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recsys.store"):
        EngineStore(root, engines={"tiny"})
    assert "adopted" not in caplog.text  # nothing left to do


def test_after_adoption_an_install_adds_only_the_changed_files(tmp_path, caplog):
    root = tmp_path / "engines"
    first_wave_store(root, [pack_files(tmp_path, {"a.bin": SHARED, "b.bin": OLD}, 0)])
    store = EngineStore(root, engines={"tiny"})
    with caplog.at_level(logging.INFO, logger="recsys.store"):
        store.install(pack_files(tmp_path, {"a.bin": SHARED, "b.bin": NEW}, 1), generation=2)
    assert "1 files (0.0 MB) added to the blobs, 1 (0.0 MB) already there" in caplog.text


def test_a_first_wave_file_that_does_not_match_its_manifest_is_not_adopted(tmp_path, caplog):
    root = tmp_path / "engines"
    first_wave_store(root, [pack_files(tmp_path, {"a.bin": SHARED, "b.bin": OLD}, 0)])
    (root / "versions" / version(0) / "b.bin").write_bytes(b"bit rot")

    with caplog.at_level(logging.WARNING, logger="recsys.store"):
        store = EngineStore(root, engines={"tiny"})

    assert store.blobs.has(sha(SHARED)) and not store.blobs.has(sha(OLD)) and not store.blobs.has(sha(b"bit rot"))
    assert "does not match its manifest entry" in caplog.text
    assert store.current().version == version(0)


def test_a_staged_build_is_all_blobs_before_it_is_installed(store, archives):
    built = verify(archives[0])
    assert store.missing(built.manifest)  # nothing held yet
    store.stage(built)
    assert store.missing(built.manifest) == []
    assert store.blobs.has(built.manifest_sha256)
    assert store.current() is None  # staged, not installed
    installed = store.install_version(built.manifest_sha256, generation=4, sha256=built.sha256)
    assert (installed.version, installed.generation) == (built.manifest.version, 4)
    assert (installed.path / "manifest.json").read_bytes() == built.manifest_bytes
