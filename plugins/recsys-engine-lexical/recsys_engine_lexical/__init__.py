"""recsys-engine-lexical: a light engine plugin, TF-IDF over sentences (numpy/scipy, no torch).

Registered as ``lexical`` in the ``recsys.engines`` entry-point group. See the
plugin's README for its scoring, files and measured quality.
"""

from importlib.metadata import PackageNotFoundError, version

from recsys_engine_lexical.engine import LexicalEngine
from recsys_engine_lexical.tokenizer import Tokenizer

try:
    __version__ = version("recsys-engine-lexical")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["LexicalEngine", "Tokenizer", "__version__"]
