"""Sentence splitting that works offline.

PLACEHOLDER — a naive splitter until the real one lands (same signature).
"""

from __future__ import annotations

import re

__all__ = ["split_sentences"]

_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (whitespace-normalised, empty ones dropped)."""
    text = " ".join(text.split())
    return [s.strip() for s in _BOUNDARY.split(text) if s.strip()]
