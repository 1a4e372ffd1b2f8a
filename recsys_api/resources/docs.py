"""``GET /openapi.json``, ``GET /docs`` (Swagger UI) and ``GET /metrics``.

Swagger UI's assets (4.15.5, from the ``swagger-ui-bundle`` package) are served by
the API under ``/docs/assets/``, and its start script (``recsys_api/static/init.js``)
under ``/docs/ui/`` (:func:`add_docs_routes`): the machines are offline, so nothing
comes from a CDN.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import falcon

from recsys_api.archive_store import ArchiveStore
from recsys_api.metrics import Metrics

__all__ = ["DocsPage", "MetricsPage", "OpenApiSpec", "add_docs_routes", "swagger_ui_folder"]

ASSETS_PREFIX = "/docs/assets"
UI_PREFIX = "/docs/ui"
STATIC_FOLDER = Path(__file__).resolve().parent.parent / "static"


def _static(name: str) -> bytes:
    return (STATIC_FOLDER / name).read_bytes()


def swagger_ui_folder() -> Path:
    """The Swagger UI distribution of the swagger-ui-bundle package."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


class OpenApiSpec:
    """``GET /openapi.json``: the spec whose request examples come from the current
    engine's corpus (its manifest's ``example``), rebuilt when the engine changes;
    generic examples before the first engine or for an archive without one."""

    def __init__(self, build: Callable[[Mapping[str, str] | None], dict[str, Any]],
                 store: ArchiveStore | None = None) -> None:
        self.build = build
        self.store = store
        self._served: tuple[str | None, bytes] | None = None

    def body(self) -> bytes:
        current = self.store.current() if self.store is not None else None
        key = current.manifest_sha256 if current is not None else None
        served = self._served
        if served is None or served[0] != key:
            example = current.manifest.example if current is not None else None
            served = self._served = (key, json.dumps(self.build(example), indent=1).encode())
        return served[1]

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body()


class _StaticPage:
    def __init__(self, name: str, content_type: str) -> None:
        self.body = _static(name)
        self.content_type = content_type

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = self.content_type
        resp.cache_control = ["no-cache"]
        resp.data = self.body


class DocsPage(_StaticPage):
    def __init__(self) -> None:
        super().__init__("docs.html", falcon.MEDIA_HTML)


class MetricsPage:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = self.metrics.render()


def add_docs_routes(
    app: falcon.App[falcon.Request, falcon.Response],
    build: Callable[[Mapping[str, str] | None], dict[str, Any]],
    store: ArchiveStore | None = None,
) -> None:
    """``/openapi.json`` (the spec ``build`` makes for the current engine of ``store``),
    ``/docs`` and Swagger UI's assets."""
    app.add_route("/openapi.json", OpenApiSpec(build, store))
    app.add_route("/docs", DocsPage())
    app.add_static_route(ASSETS_PREFIX, swagger_ui_folder())
    app.add_static_route(UI_PREFIX, STATIC_FOLDER)
