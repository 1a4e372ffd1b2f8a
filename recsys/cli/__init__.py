"""The ``recsys`` command: local builds, verification, recommendations, and the embedded server.

This package is the only part of :mod:`recsys` that may import ``recsys_api`` and
``recsys_workers`` — lazily, for ``serve``.
"""

from recsys.cli.main import main

__all__ = ["main"]
