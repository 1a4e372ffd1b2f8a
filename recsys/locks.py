"""The one cross-process file lock of recsys: ``flock`` on a lock file.

Used wherever the processes of one machine must take turns: the engine store
(one install per machine), the API's archive store (gunicorn's processes agree on
the generation counter) and plugins (the annoy plugin's one model export per
machine). Properties:

* **exclusive across processes and threads**: every process and every other thread
  waits while one thread holds it;
* **re-entrant** within the thread that holds it (one :class:`FileLock` object), so
  a holder may call code that takes the same lock again;
* **a timeout**: :class:`~recsys.errors.LockTimeout` after ``timeout`` seconds
  (``0``: one try), naming the lock file, the process that holds it (its pid is
  written into the file) and what to do;
* **released by the kernel** when its holder dies (``kill -9`` included): a lock file
  left on disk is never a stale lock, and nobody needs to delete it.

Two :class:`FileLock` objects on the same path exclude each other, also within one
process (each opens its own file description).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recsys.errors import LockTimeout

__all__ = ["FileLock", "file_lock"]

#: Seconds between tries while another process holds the lock: doubling from the first to the last.
FIRST_POLL = 0.005
LAST_POLL = 0.25


class FileLock:
    """An exclusive ``flock`` on ``path`` (created, with its folder, when missing).

    ``name`` says in errors which lock it is (``"the engine store lock"``); ``busy``
    says what to do when it stays held (``"retry when the install is done"``).
    """

    def __init__(self, path: Path, *, name: str = "the lock", busy: str = "retry later") -> None:
        self.path = Path(path)
        self.name = name
        self.busy = busy
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def hold(self, timeout: float = 600.0) -> Iterator[None]:
        """Hold the lock for the block; raise LockTimeout after ``timeout`` seconds."""
        deadline = time.monotonic() + max(timeout, 0.0)
        acquired = self._mutex.acquire(timeout=timeout) if timeout > 0 else self._mutex.acquire(blocking=False)
        if not acquired:
            raise LockTimeout(
                f"timed out after {timeout:g} s waiting for {self.name} {str(self.path)!r}: another thread of "
                f"this process holds it; {self.busy}"
            )
        try:
            if self._depth == 0:
                self._fd = self._lock_until(deadline, timeout)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                    os.close(self._fd)
                    self._fd = None
        finally:
            self._mutex.release()

    def _lock_until(self, deadline: float, timeout: float) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            delay = FIRST_POLL
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._timeout(fd, timeout) from None
                    time.sleep(min(delay, remaining))
                    delay = min(delay * 2, LAST_POLL)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _timeout(self, fd: int, timeout: float) -> LockTimeout:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        return LockTimeout(
            f"timed out after {timeout:g} s waiting for {self.name} {str(self.path)!r} (held by process {holder}): "
            f"{self.busy}"
        )


@contextmanager
def file_lock(
    path: Path, timeout: float = 600.0, *, name: str = "the lock", busy: str = "retry later"
) -> Iterator[None]:
    """Hold a fresh :class:`FileLock` on ``path`` for the block (not re-entrant across calls)."""
    with FileLock(path, name=name, busy=busy).hold(timeout):
        yield
