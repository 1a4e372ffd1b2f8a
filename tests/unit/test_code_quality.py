"""Lint and type checks run as part of the test suite, so CI enforces them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def test_ruff_finds_nothing():
    out = subprocess.run([tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


#: Every package, each with ``strict = True`` in setup.cfg (checked below).
PACKAGES = ("recsys", "recsys_api", "recsys_workers", "recsys_engine_lexical", "recsys_engine_annoy")


def test_mypy_strict_on_every_package():
    command = [tool("mypy"), "--no-incremental", "--cache-dir=/dev/null",
               "recsys", "recsys_api", "recsys_workers",
               "plugins/recsys-engine-lexical/recsys_engine_lexical", "plugins/recsys-engine-annoy/recsys_engine_annoy"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_setup_cfg_makes_mypy_strict_on_every_package():
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    for package in PACKAGES:
        assert config.getboolean(f"mypy-{package}.*", "strict", fallback=False), f"{package} is not strict"
