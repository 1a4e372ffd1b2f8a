"""recsys: recommends scientific publications for a piece of text.

The core library: domain types, settings, errors, the Engine base class and its
registry, the archive format, the on-disk engine store and the in-process cache,
publication sources. It imports no web framework, no queue and no torch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("recsys")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
