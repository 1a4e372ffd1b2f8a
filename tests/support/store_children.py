"""Child processes for the store concurrency test (importable by a spawned interpreter).

Each child opens the store, waits at a barrier so that all install at the same
moment, installs the archive, and reports what it ended with. Every unpack is
recorded as one line in ``marker`` (appends of one short line are atomic).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any


def install(root: str, archive: str, marker: str, barrier: Any, results: Any) -> None:
    try:
        import recsys.store as store_module
        from recsys.store import EngineStore

        real_extract = store_module.EngineStore._assemble

        def counting_extract(*args: Any, **kwargs: Any) -> Any:
            with open(marker, "a") as out:
                out.write(f"{os.getpid()}\n")
            return real_extract(*args, **kwargs)

        store_module.EngineStore._assemble = counting_extract  # type: ignore[method-assign]
        store = EngineStore(Path(root), engines={"tiny"})
        barrier.wait(timeout=120)
        installed = store.install(Path(archive), generation=1)
        current = store.current()
        assert current is not None
        results.put(("ok", os.getpid(), installed.version, installed.generation, current.version))
    except BaseException:  # report anything, or the parent waits for nothing
        results.put(("error", os.getpid(), traceback.format_exc()))
