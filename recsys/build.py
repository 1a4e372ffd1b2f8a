"""Building an engine archive from publications.

Used by ``recsys build`` and by the ``build_index`` actor: both go through
:func:`build_archive`, so a local build and a cluster build make the same archive.
Loading an unpacked engine is :mod:`recsys.load`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.archive import Limits, VerifiedArchive, pack, read_manifest, verify
from recsys.config import Settings
from recsys.domain import Publication
from recsys.engine import NULL_PROGRESS, Engine, EngineMetadata, Progress
from recsys.errors import InvalidArchive, RecsysError
from recsys.quality import compare
from recsys.registry import Registry
from recsys.text import split_sentences

__all__ = ["build_archive", "corpus_example"]

#: The longest example text a build records (a few sentences).
EXAMPLE_CHARS = 300

logger = logging.getLogger(__name__)


def build_archive(
    publications: Sequence[Publication],
    out: Path,
    *,
    engine: str,
    registry: Registry,
    settings: Settings,
    progress: Progress = NULL_PROGRESS,
    previous: Path | None = None,
    workdir: Path | None = None,
    kind: str | None = None,
    changes_through: int | None = None,
    measure_quality: bool = True,
    check_load: bool = False,
) -> VerifiedArchive:
    """Fit engine ``engine`` on ``publications`` in a temporary folder, save it, pack
    it into ``out`` and verify the result (the temporary folder is always removed).
    ``previous``: the unpacked folder of the engine in service, for reuse.
    ``workdir``: where the temporary folder goes (default: beside ``out``, so that
    a large engine is not written to a small /tmp).
    ``kind`` and ``changes_through`` go into the manifest (a live-update apply is
    ``kind="apply"``, with the highest publication change id it includes).
    ``measure_quality=False`` skips the quality comparison (applies are not gated);
    ``check_load=True`` loads the saved engine back and checks that it holds as many
    publications as it was fitted on (InvalidArchive otherwise).

    The manifest records the plugin distribution's version and recsys's, and an
    example query from the corpus (:func:`corpus_example`). Raises
    EngineNotFound / EngineLoadError for a missing or broken plugin, what the
    engine raises for unusable input, and InvalidArchive (``out`` removed) when the
    result does not pass :func:`recsys.archive.verify` with the settings' limits.
    """
    started = time.monotonic()
    out = Path(out)
    engine_class = registry.get(engine)
    base = Path(workdir) if workdir is not None else out.parent
    base.mkdir(parents=True, exist_ok=True)
    logger.info("build: engine %r over %d publications", engine, len(publications))
    with tempfile.TemporaryDirectory(prefix=".recsys-build-", dir=base) as tmp:
        folder = Path(tmp) / "engine"
        folder.mkdir()
        with engine_class(settings) as instance:
            stage = time.monotonic()
            instance.fit(publications, progress=progress, previous=previous)
            logger.info("build: fitted engine %r in %.1fs", engine, time.monotonic() - stage)
            quality = (_measure_quality(instance, engine, engine_class, publications, previous, settings)
                       if measure_quality else None)
            stage = time.monotonic()
            metadata = instance.save(folder)
            if not isinstance(metadata, EngineMetadata):
                raise RecsysError(
                    f"engine {engine!r} save() returned {type(metadata).__name__}, not EngineMetadata; fix the plugin"
                )
            logger.info("build: saved engine %r in %.1fs", engine, time.monotonic() - stage)
        if check_load:
            _check_loads(engine_class, folder, settings, metadata.publications)
        packed = pack(folder, out, engine=engine, metadata=metadata, engine_version=registry.version_of(engine),
                      quality=quality, example=corpus_example(publications), kind=kind,
                      changes_through=changes_through)
    try:
        verified = verify(out, Limits.from_settings(settings), engines=registry.usable())
        if verified.sha256 != packed.sha256:
            raise InvalidArchive(f"archive {str(out)!r} changed between packing and verifying; build again")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    logger.info(
        "build: wrote %s (engine %s version %s, %d publications, %.1f MB) in %.1fs",
        out, engine, verified.manifest.version, verified.manifest.publications, verified.size / 1e6,
        time.monotonic() - started,
    )
    return verified


def _check_loads(engine_class: type[Engine], folder: Path, settings: Settings, expected: int) -> None:
    """The saved engine loads, and holds ``expected`` publications (InvalidArchive otherwise)."""
    try:
        with engine_class.load(folder, settings) as loaded:
            count = loaded.publication_count
    except RecsysError as exc:
        raise InvalidArchive(f"the built engine does not load back: {exc.message}") from exc
    if count != expected:
        raise InvalidArchive(f"the built engine holds {count} publications once loaded, not {expected}")


def _measure_quality(
    built: Engine, engine: str, engine_class: type[Engine], publications: Sequence[Publication],
    previous: Path | None, settings: Settings,
) -> dict[str, Any] | None:
    """The quality gate's comparison of ``built`` with the engine in ``previous``
    (recsys.quality); None for the first engine, a change of plugin, or when the
    previous engine cannot be measured (logged: the gate then has nothing to check)."""
    if previous is None:
        return None
    try:
        current = read_manifest(previous)
    except RecsysError as exc:
        logger.warning("build: no quality comparison: the previous engine's manifest: %s", exc)
        return None
    if current.engine != engine:
        logger.info("build: engine plugin changes from %r to %r: no quality comparison", current.engine, engine)
        return None
    try:
        with engine_class.load(previous, settings) as old:
            return compare(built, old, publications, against=current.version)
    except RecsysError as exc:
        logger.warning("build: no quality comparison with engine %s: %s", current.version, exc)
        return None


def corpus_example(publications: Sequence[Publication]) -> dict[str, str] | None:
    """An example query from the corpus, for the API's Swagger examples: the opening
    sentences (up to :data:`EXAMPLE_CHARS`) of one publication's abstract (else its
    text) and that publication's id. The publication is the middle one by id among those
    with body text, so a build of the same corpus picks the same; None when none has any."""
    usable = sorted((p for p in publications if (p.abstract or p.text or "").strip()), key=lambda p: p.id)
    if not usable:
        return None
    chosen = usable[len(usable) // 2]
    return {"text": _opening(chosen.abstract or chosen.text or ""), "publication_id": chosen.id}


def _opening(body: str) -> str:
    """The first sentences of ``body`` that fit in EXAMPLE_CHARS (at least one, cut at a word)."""
    text = ""
    for sentence in split_sentences(body) or [body.strip()]:
        candidate = f"{text} {sentence}".strip()
        if text and len(candidate) > EXAMPLE_CHARS:
            break
        text = candidate
    if len(text) > EXAMPLE_CHARS:
        text = text[:EXAMPLE_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"
    return text
