"""The engine endpoints: manifest, files, archive download/upload, rollback, builds.

``GET /v1/engine`` (the current version's manifest and identity) and
``GET /v1/engine/files/{sha256}`` (one file, or the manifest's exact bytes) are what
workers use to catch up, downloading only the files they lack;
``GET /v1/engine/archive`` is the full archive (backups, first-wave workers,
``recsys verify``). Uploads, rollbacks and builds need the API token
(:mod:`recsys_api.auth`).
"""

from __future__ import annotations

from collections.abc import Callable

import falcon

from recsys import protocol
from recsys_api.archive_store import ArchiveStore, StoredVersion
from recsys_api.auth import RequireToken, token_required
from recsys_api.body import body_stream, read_json
from recsys_api.broadcast import Broadcaster
from recsys_api.builds import BuildStarter
from recsys_api.errors import ApiError, http_error
from recsys_api.metrics import Metrics
from recsys_api.ranges import serve_file
from recsys_api.resources._replies import accepted

__all__ = ["Builds", "EngineArchive", "EngineFile", "EngineManifest", "Rollback"]

#: Media types accepted for an upload.
ARCHIVE_TYPES = ("application/zip", "application/octet-stream")
#: A file is named by its content: the same URL never serves other bytes.
IMMUTABLE = ["public", "max-age=31536000", "immutable"]
#: The archive URL serves whichever version is current: revalidate (ETag) each time.
REVALIDATE = ["no-cache"]
#: The largest body of POST /v1/engine/builds (``{"force": true}``).
BUILD_BODY_MAX_BYTES = 1024


def _no_engine() -> ApiError:
    return ApiError(
        404, "No engine yet",
        "no engine has been installed yet: it is built at the API's first start, or start a build with "
        "POST /v1/engine/builds, or upload an archive with PUT /v1/engine/archive",
    )


def _version_headers(resp: falcon.Response, version: StoredVersion) -> None:
    resp.etag = version.version
    if version.sha256 is not None:
        resp.set_header(protocol.HEADER_SHA256, version.sha256)
    resp.set_header(protocol.HEADER_GENERATION, str(version.generation))
    resp.set_header(protocol.HEADER_VERSION, version.version)


class EngineManifest:
    def __init__(self, store: ArchiveStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        current = self.store.current()
        if current is None:
            raise _no_engine()
        resp.media = current.to_dict()


class EngineFile:
    """``GET``/``HEAD /v1/engine/files/{sha256}``: a file (or manifest) of a kept version."""

    def __init__(self, store: ArchiveStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response, sha256: str) -> None:
        fp, size = self.store.open_file(sha256)  # UnknownFile: 404 with code unknown_file
        sent = serve_file(req, resp, fp, size, tag=sha256, cache_control=IMMUTABLE)
        self.metrics.served(req.uri_template or "", sent)

    on_head = on_get


class EngineArchive:
    def __init__(
        self, store: ArchiveStore, broadcaster: Broadcaster, require_token: RequireToken, metrics: Metrics, *,
        on_current: Callable[[StoredVersion], None] | None = None,
    ) -> None:
        self.on_current = on_current
        self.store = store
        self.broadcaster = broadcaster
        self.require_token = require_token
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        opened = self.store.open_current()  # assembled on the first request for a version
        if opened is None:
            raise _no_engine()
        version, stream = opened
        _version_headers(resp, version)
        resp.downloadable_as = f"recsys-engine-{version.version}.zip"
        assert version.size is not None  # an opened full archive has its size
        sent = serve_file(req, resp, stream, version.size, tag=version.version, cache_control=REVALIDATE,
                          content_type="application/zip")
        self.metrics.served(req.uri_template or "", sent)

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
        force = req.get_param_as_bool("force", default=False)  # past the quality gate
        installed = self.store.install(stream, length=req.content_length, force=bool(force))  # 409s: see errors
        assert installed is not None  # only_if_empty is False
        if self.on_current is not None:
            self.on_current(installed)  # live updates: its changes are applied
        self.broadcaster.publish(installed)
        resp.status = falcon.HTTP_201
        _version_headers(resp, installed)
        resp.media = installed.to_dict()


class Rollback:
    def __init__(self, store: ArchiveStore, broadcaster: Broadcaster, require_token: RequireToken, *,
                 on_current: Callable[[StoredVersion], None] | None = None) -> None:
        self.on_current = on_current
        self.store = store
        self.broadcaster = broadcaster
        self.require_token = require_token

    @falcon.before(token_required)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        current = self.store.rollback()
        if self.on_current is not None:
            self.on_current(current)  # live updates: changes past it are rolled back
        self.broadcaster.publish(current)
        _version_headers(resp, current)
        resp.media = current.to_dict()


class Builds:
    def __init__(self, builds: BuildStarter, require_token: RequireToken) -> None:
        self.builds = builds
        self.require_token = require_token

    @falcon.before(token_required)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        accepted(resp, self.builds.start(force=_build_options(req)))


def _build_options(req: falcon.Request) -> bool:
    """``force`` of an optional JSON body ``{"force": true}`` (past the quality gate); no
    body (or ``{}``) is a normal build. Anything else is a 400 naming the problem."""
    if not req.content_length and req.get_header("Transfer-Encoding") is None:
        return False
    body = read_json(req, BUILD_BODY_MAX_BYTES)
    if not isinstance(body, dict):
        raise http_error("bad_request", "the body of POST /v1/engine/builds must be a JSON object such as "
                         '{"force": true}, or nothing')
    unknown = sorted(set(body) - {"force"})
    if unknown:
        raise http_error("bad_request", f"unknown field {unknown[0]!r}: the only option of a build is 'force'",
                         extra={"field": unknown[0]})
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise http_error("bad_request", f"'force' must be true or false, not {force!r}", extra={"field": "force"})
    return force
