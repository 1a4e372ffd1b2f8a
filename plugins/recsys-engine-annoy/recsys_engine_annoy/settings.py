"""The annoy plugin's settings: ``RECSYS_ANNOY_*``, declared for the core.

Published as the entry point ``annoy`` of the ``recsys.settings`` group, so that
``Settings.from_env`` checks these variables at start, ``recsys settings`` lists them
and the unknown-variable warning knows them. This module imports only the core's
config (no numpy, annoy or torch): the core reads it without loading the engine.

``RECSYS_MODEL`` (a name operators rely on) is read as the alias of
``RECSYS_ANNOY_MODEL``; setting both to different values is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recsys.config import Field, PluginSettings, Settings, float_range, int_range, one_of, optional, parse_path

__all__ = ["BACKEND_CHOICES", "DEFAULT_LEXICAL_WEIGHT", "SETTINGS", "AnnoySettings", "annoy_settings"]

#: The lexical share of the hybrid score (docs/engine-annoy.md "Hybrid retrieval" has the measurements).
DEFAULT_LEXICAL_WEIGHT = 0.5
#: ``RECSYS_ANNOY_EMBEDDING_BACKEND`` values (``auto`` resolves to one of the others).
BACKEND_CHOICES = ("auto", "torch", "onnx", "onnx-int8")


@dataclass(frozen=True)
class AnnoySettings:
    """The annoy plugin's settings, typed (see :data:`SETTINGS` for each one's help)."""

    model: Path | None = None
    embedding_backend: str = "auto"
    batch_size: int = 32
    device: str = "auto"
    trees: int = 0
    search_k: int = 0
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT


SETTINGS: PluginSettings[AnnoySettings] = PluginSettings(
    "annoy",
    (
        Field("model", optional(parse_path), "",
              "embedding model: a local SentenceTransformer folder (also read as RECSYS_MODEL); "
              "empty: the packaged all-MiniLM-L6-v2", aliases=("RECSYS_MODEL",)),
        Field("embedding_backend", one_of(*BACKEND_CHOICES), "auto",
              "how sentences are encoded: torch, onnx, onnx-int8; auto: the fastest with vectors identical to torch "
              "(onnx on a CPU, torch on a GPU), or the backend of the engine a build extends"),
        Field("batch_size", int_range(1, 4096), "32", "sentences encoded per batch"),
        Field("device", one_of("auto", "cpu", "cuda"), "auto", "where torch runs the model; auto: a GPU when present"),
        Field("trees", int_range(0, 10_000), "0", "Annoy trees; 0: derived from the corpus size"),
        Field("search_k", int_range(-1, 10_000_000), "0",
              "Annoy nodes inspected per query; 0: derived from trees and k; -1: Annoy's default"),
        Field("lexical_weight", float_range(0.0, 1.0), str(DEFAULT_LEXICAL_WEIGHT),
              "the lexical share w of the hybrid score (1 - w) * max(0, cosine) + w * TF-IDF cosine; 0: dense only; "
              "a request's lexical_weight overrides it"),
    ),
    AnnoySettings,
    title="the default engine: SentenceTransformer sentence embeddings searched with Annoy",
)


def annoy_settings(settings: Settings) -> AnnoySettings:
    """This plugin's settings from the process's settings."""
    return settings.plugin(SETTINGS)
