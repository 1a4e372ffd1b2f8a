"""The engine endpoints: manifest, archive download/upload, rollback, builds.

``GET /v1/engine`` and ``GET /v1/engine/archive`` are what workers use to catch up;
uploads, rollbacks and builds need the API token (:mod:`recsys_api.auth`).
"""

from __future__ import annotations

import falcon

from recsys import protocol
from recsys_api.archive_store import ArchiveStore, StoredArchive
from recsys_api.auth import RequireToken, token_required
from recsys_api.body import body_stream
from recsys_api.broadcast import Broadcaster
from recsys_api.builds import BuildStarter
from recsys_api.errors import ApiError, http_error
from recsys_api.resources._replies import accepted

__all__ = ["Builds", "EngineArchive", "EngineManifest", "Rollback"]

#: Media types accepted for an upload.
ARCHIVE_TYPES = ("application/zip", "application/octet-stream")


def _no_engine() -> ApiError:
    return ApiError(
        404, "No engine yet",
        "no engine has been installed yet: it is built at the API's first start, or start a build with "
        "POST /v1/engine/builds, or upload an archive with PUT /v1/engine/archive",
    )


def _archive_headers(resp: falcon.Response, archive: StoredArchive) -> None:
    resp.etag = archive.version
    resp.set_header(protocol.HEADER_SHA256, archive.sha256)
    resp.set_header(protocol.HEADER_GENERATION, str(archive.generation))
    resp.set_header(protocol.HEADER_VERSION, archive.version)


class EngineManifest:
    def __init__(self, store: ArchiveStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        current = self.store.current()
        if current is None:
            raise _no_engine()
        resp.media = current.to_dict()


class EngineArchive:
    def __init__(self, store: ArchiveStore, broadcaster: Broadcaster, require_token: RequireToken) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.require_token = require_token

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        opened = self.store.open_current()
        if opened is None:
            raise _no_engine()
        archive, stream = opened
        _archive_headers(resp, archive)
        if _matches(req, archive.version):
            stream.close()
            resp.status = falcon.HTTP_304
            return
        resp.content_type = "application/zip"
        resp.downloadable_as = f"recsys-engine-{archive.version}.zip"
        resp.set_stream(stream, archive.size)

    @falcon.before(token_required)
    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
        if media_type not in ARCHIVE_TYPES:
            raise ApiError(
                415, "Unsupported media type",
                f"send the archive's bytes with 'Content-Type: application/zip' (got {req.content_type or 'none'!r})",
            )
        stream = body_stream(req)  # with Content-Length, or chunked (read to its end)
        if stream is None:
            raise http_error("invalid_archive", "the request body is empty: send the engine archive (a zip file)")
        installed = self.store.install(stream, length=req.content_length)
        assert installed is not None  # only_if_empty is False
        self.broadcaster.publish(installed)
        resp.status = falcon.HTTP_201
        _archive_headers(resp, installed)
        resp.media = installed.to_dict()


def _matches(req: falcon.Request, version: str) -> bool:
    tags = req.if_none_match
    if not tags:
        return False
    return any(tag == "*" or str(tag) == version for tag in tags)


class Rollback:
    def __init__(self, store: ArchiveStore, broadcaster: Broadcaster, require_token: RequireToken) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.require_token = require_token

    @falcon.before(token_required)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        current = self.store.rollback()
        self.broadcaster.publish(current)
        _archive_headers(resp, current)
        resp.media = current.to_dict()


class Builds:
    def __init__(self, builds: BuildStarter, require_token: RequireToken) -> None:
        self.builds = builds
        self.require_token = require_token

    @falcon.before(token_required)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        accepted(resp, self.builds.start())
