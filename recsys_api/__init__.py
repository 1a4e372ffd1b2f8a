"""recsys_api: the HTTP API (Falcon WSGI, served by gunicorn).

``create_app`` builds the app on injected dependencies (tests, embedded mode);
``get_app`` builds it for a deployment from the ``RECSYS_*`` settings. It never imports
torch or an engine plugin.
"""

from recsys_api.app import create_app, get_app

__all__ = ["create_app", "get_app"]
