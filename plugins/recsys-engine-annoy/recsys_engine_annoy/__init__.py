"""recsys-engine-annoy: the default recsys engine.

SentenceTransformer sentence vectors (torch or onnxruntime), Annoy indexes over
sentences and publications, ranking by the cosine of mean sentence vectors. Registered
as the engine ``annoy`` in the ``recsys.engines`` entry-point group, and its settings
(``RECSYS_ANNOY_*``, :mod:`recsys_engine_annoy.settings`) in ``recsys.settings``. See
docs/engine-annoy.md.

Importing the package is cheap: the engine (numpy, annoy) is imported at first use of
``AnnoyEngine``, so the core reads the settings declaration without loading it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys_engine_annoy.engine import AnnoyEngine

__all__ = ["AnnoyEngine"]


def __getattr__(name: str) -> Any:
    if name == "AnnoyEngine":
        from recsys_engine_annoy.engine import AnnoyEngine

        return AnnoyEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
