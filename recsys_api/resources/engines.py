"""``GET /v1/engines``: the engine plugins installed beside the API, as the registry lists them.

The API lists entry points without importing them (``Registry.discover(load=False)``),
so it never imports torch; ``status`` is therefore ``not loaded`` unless a plugin's
entry point is malformed (``broken``, with the error).
"""

from __future__ import annotations

from collections.abc import Sequence

import falcon

from recsys.registry import EngineRecord

__all__ = ["Engines"]


class Engines:
    def __init__(self, records: Sequence[EngineRecord], default: str) -> None:
        self.body = {"default": default, "engines": [record.to_dict() for record in records]}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.body
