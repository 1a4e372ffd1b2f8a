"""``recsys serve`` as a real process, for the end-to-end and browser tests."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from recsys.testing import sample_publications
from tests.e2e.compose import ROOT
from tests.e2e.stack import process_env
from tests.support.processes import BIN, Process, free_port, wait_until

__all__ = ["ServeProcess", "write_sample_corpus"]

#: What ``recsys serve`` prints when it has an engine: the first build ended, or one was on disk.
READY = re.compile(r"engine ready after|^  engine: \S+ version ", re.MULTILINE)


def write_sample_corpus(path: Path) -> Path:
    """The small sample corpus as a JSON-lines file (a RECSYS_SOURCE)."""
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in sample_publications()), encoding="utf-8")
    return path


class ServeProcess(Process):
    """``recsys serve --port P`` on a free port, configured by ``settings`` only."""

    def __init__(self, folder: Path, settings: Mapping[str, str], *args: str) -> None:
        self.port = free_port()
        super().__init__(
            "recsys-serve", [str(BIN / "recsys"), "serve", "--port", str(self.port), *args],
            process_env({"RECSYS_DATA_DIR": str(folder / "data"), **settings}), ROOT, folder / "serve.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Wait until it says its first engine is ready (or that it had one)."""
        def ready() -> bool:
            if READY.search(self.text()):
                return True
            if not self.running:
                raise AssertionError(f"recsys serve exited with {self.returncode}:\n{self.tail()}")
            return False

        wait_until(ready, timeout=timeout, what="recsys serve to have an engine")
