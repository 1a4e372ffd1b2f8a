"""deploy/gunicorn.conf.py sets glibc's allocator in each worker (``post_fork``): 2 arenas,
and a fixed mmap threshold, so that a large buffer freed goes back to the system and
the next one is mmapped again instead of being carved out of (and kept in) an arena.

Each check runs in a child interpreter: the allocator of the test process is left alone.
"""

from __future__ import annotations

import json
import os
import platform
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

CONF = Path(__file__).resolve().parents[3] / "deploy" / "gunicorn.conf.py"

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(3) settings are glibc's")

#: In the child: optionally tune, then free a 1 MiB buffer and make another one; print
#: what tune_malloc applied and by how many bytes the second buffer grew what glibc holds
#: in mmapped chunks (mallinfo2's hblkhd). glibc raises its mmap threshold to the size of a
#: freed mmapped chunk, so without a fixed threshold the second buffer is not mmapped.
CHILD = """
import ctypes, json, runpy, sys
conf = runpy.run_path(sys.argv[1])
applied = conf["tune_malloc"]() if sys.argv[2] == "tune" else []
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
first = bytes(1 << 20)
del first
before = libc.mallinfo2().hblkhd
second = bytes(1 << 20)
print(json.dumps({"applied": applied, "mmapped": libc.mallinfo2().hblkhd - before}))
"""


def child(mode: str, **env: str) -> dict:
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("RECSYS_", "MALLOC_", "GLIBC_TUNABLES"))}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", CHILD, str(CONF), mode], cwd=CONF.parent, env=environ,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_the_settings_a_freed_1_mib_buffer_makes_the_next_one_come_from_an_arena():
    result = child("plain")

    assert result["mmapped"] < 1 << 20


def test_post_fork_sets_two_arenas_and_a_fixed_mmap_threshold_so_large_buffers_are_mmapped():
    result = child("tune")

    assert result["applied"] == ["MALLOC_ARENA_MAX=2", f"MALLOC_MMAP_THRESHOLD_={128 * 1024}"]
    assert result["mmapped"] >= 1 << 20


def test_a_setting_given_in_the_environment_is_left_to_glibc():
    result = child("tune", MALLOC_ARENA_MAX="4")

    assert result["applied"] == [f"MALLOC_MMAP_THRESHOLD_={128 * 1024}"]


def test_post_fork_is_the_hook_that_tunes(monkeypatch):
    for key in [k for k in os.environ if k.startswith("RECSYS_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(CONF.parent)  # no .env there
    conf = runpy.run_path(str(CONF))
    monkeypatch.setitem(conf["post_fork"].__globals__, "tune_malloc", lambda: ["MALLOC_ARENA_MAX=2"])
    logged: list[tuple[object, ...]] = []
    worker = SimpleNamespace(log=SimpleNamespace(debug=lambda *args: logged.append(args)))

    conf["post_fork"](None, worker)

    assert logged == [("allocator: %s", "MALLOC_ARENA_MAX=2")]
