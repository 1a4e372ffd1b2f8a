"""Building an engine archive from publications, and loading an unpacked engine.

INTERFACE STUB — implementation pending (see the docstrings for the contract).

Used by ``recsys build`` and by the ``build_index`` actor: both go through
:func:`build_archive`, so a local build and a cluster build make the same archive.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from recsys.archive import VerifiedArchive
from recsys.config import Settings
from recsys.domain import Publication
from recsys.engine import NULL_PROGRESS, Engine, Progress
from recsys.registry import Registry

__all__ = ["build_archive", "load_engine"]


def build_archive(
    publications: Sequence[Publication],
    out: Path,
    *,
    engine: str,
    registry: Registry,
    settings: Settings,
    progress: Progress = NULL_PROGRESS,
    previous: Path | None = None,
) -> VerifiedArchive:
    """Fit engine ``engine`` on ``publications`` in a temporary folder, save it, pack
    it into ``out`` and verify the result (the temporary folder is always removed).
    ``previous``: the unpacked folder of the engine in service, for reuse."""
    raise NotImplementedError


def load_engine(folder: Path, *, registry: Registry, settings: Settings) -> Engine:
    """Load the unpacked engine in ``folder`` with the plugin its manifest names
    (EngineNotFound / EngineLoadError with the reason)."""
    raise NotImplementedError
