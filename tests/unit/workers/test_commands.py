"""The two commands that import recsys_workers, as processes (no services needed: with
no RECSYS_BROKER_URL the settings are the embedded ones)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def command_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env.update(RECSYS_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT), **settings)
    return env


@pytest.mark.parametrize("argv", [["periodiq", "recsys_workers"],
                                  ["dramatiq", "recsys_workers", "--processes", "1", "--threads", "1"]])
def test_invalid_settings_stop_a_command_with_the_reason(tmp_path, argv):
    env = command_env(tmp_path, RECSYS_REQUEST_TIMEOUT="abc")
    out = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "cannot start: RECSYS_REQUEST_TIMEOUT='abc' is not valid" in out.stderr


def test_periodiq_without_a_cron_idles_and_stops_cleanly(tmp_path):
    # Given the scheduler command with no cron (embedded settings: no services needed)
    env = command_env(tmp_path, RECSYS_REBUILD_CRON="")
    process = subprocess.Popen([str(BIN / "periodiq"), "recsys_workers"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
    try:
        # When it has started, it says that scheduling is off and keeps running
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = process.stdout.readline().decode(errors="replace")  # unbuffered: select stays truthful
            if not line:
                break
            lines.append(line)
            if "scheduled rebuilds are off" in line:
                break
        assert any("RECSYS_REBUILD_CRON is empty" in line for line in lines), "".join(lines)
        assert process.poll() is None
        # Then SIGTERM stops it with exit status 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
