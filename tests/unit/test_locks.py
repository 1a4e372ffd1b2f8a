"""recsys.locks.FileLock: exclusive across processes and threads, re-entrant for its
holder, a timeout that names the lock and its holder, released when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from recsys.errors import LockTimeout
from recsys.locks import FileLock, file_lock

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from pathlib import Path
from recsys.locks import FileLock
with FileLock(Path(sys.argv[1])).hold(timeout=5):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_two_locks_on_one_path_exclude_each_other_and_say_who_holds_it(tmp_path):
    path = tmp_path / "sub" / ".lock"  # the folder is created
    holder = FileLock(path, name="the test lock", busy="wait for the test")
    with holder.hold():
        with pytest.raises(LockTimeout) as caught, FileLock(path).hold(timeout=0.02):
            pass
    message = str(caught.value)
    assert f"waiting for the lock {str(path)!r} (held by process {os.getpid()})" in message
    with file_lock(path, timeout=0):  # free again
        pass


def test_the_timeout_message_names_the_lock_and_what_to_do(tmp_path):
    path = tmp_path / ".lock"
    with FileLock(path).hold(), pytest.raises(LockTimeout) as caught:
        with FileLock(path, name="the engine store lock", busy="retry when the install is done").hold(timeout=0):
            pass
    assert str(caught.value).startswith(f"timed out after 0 s waiting for the engine store lock {str(path)!r}")
    assert str(caught.value).endswith(": retry when the install is done")


def test_the_holding_thread_may_take_it_again_other_threads_wait(tmp_path):
    lock = FileLock(tmp_path / ".lock", name="the store lock")
    outcome: list[BaseException | None] = []

    def other_thread() -> None:
        try:
            with lock.hold(timeout=0):
                outcome.append(None)
        except LockTimeout as exc:
            outcome.append(exc)

    with lock.hold(), lock.hold(timeout=0):  # re-entrant for its holder
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=30)
    assert isinstance(outcome[0], LockTimeout) and "another thread of this process holds it" in str(outcome[0])
    with FileLock(tmp_path / ".lock").hold(timeout=0):  # released after the outer block only
        pass


def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path):
    path = tmp_path / ".lock"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(LockTimeout, match=f"held by process {child.pid}"), FileLock(path).hold(timeout=0):
            pass
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert path.exists()  # the file stays, but it is no stale lock
    with FileLock(path).hold(timeout=0):
        pass
