"""recsys-engine-annoy: the default recsys engine.

SentenceTransformer sentence vectors (torch or onnxruntime), Annoy indexes over
sentences and publications, ranking by the cosine of mean sentence vectors. Registered
as the engine ``annoy`` in the ``recsys.engines`` entry-point group. See
docs/engine-annoy.md.
"""

from recsys_engine_annoy.engine import AnnoyEngine

__all__ = ["AnnoyEngine"]
