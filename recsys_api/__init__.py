"""recsys_api: the HTTP API (Falcon WSGI, served by gunicorn).

``create_app`` builds the app on injected dependencies (tests, embedded mode);
``get_app`` builds it for a deployment from the ``RECSYS_*`` settings. It never imports
torch or an engine plugin.

Both are imported on first use, so that importing a falcon-free module of this
package (``recsys_api.broadcast``, which the workers use to publish) does not import
falcon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys_api.app import create_app, get_app

__all__ = ["create_app", "get_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from recsys_api import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
